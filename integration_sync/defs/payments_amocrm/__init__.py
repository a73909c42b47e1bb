"""Flow 3: platform payment webhooks → amoCRM contacts, leads, fields and notes (asset group `payments_amocrm`)."""

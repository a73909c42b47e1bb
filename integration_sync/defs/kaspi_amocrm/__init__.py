"""Flow 2: Kaspi.kz orders → amoCRM leads with catalog items (asset group `kaspi_amocrm`)."""

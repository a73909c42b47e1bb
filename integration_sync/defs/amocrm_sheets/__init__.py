"""amoCRM leads ↔ Google Sheets (the fourth seed)."""

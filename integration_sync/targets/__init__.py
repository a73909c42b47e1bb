"""Target-side pieces shared by flows (e.g. amoCRM lead indexes by external key); no Dagster here."""

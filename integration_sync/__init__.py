"""integration_sync: Dagster assets that sync CRMs."""

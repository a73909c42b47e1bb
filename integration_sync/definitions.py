"""The one Dagster entry point (workspace.yaml loads it): every flow folder under `defs/` registers
itself (`load_from_defs_folder` finds each folder's `SyncFlow` component), plus the shared warehouse."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from integration_sync.connectors.redaction import install_http_log_redaction
from integration_sync.defs.resources import warehouse_resource

install_http_log_redaction()

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources={"warehouse": warehouse_resource()}),
)

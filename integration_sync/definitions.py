"""The one Dagster entry point (workspace.yaml loads it): every flow folder under `defs/` registers
itself (`load_from_defs_folder` finds each folder's `SyncFlow` component), plus the shared warehouse."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from integration_sync.connectors.redaction import install_http_log_redaction
from integration_sync.defs.resources import warehouse_resource
from integration_sync.lib.settings_files import apply_environment

apply_environment(os.environ)  # ENVIRONMENT=dev|prod: before any resource reads a variable
install_http_log_redaction()
# Dagster's own code warns, not ours: `load_from_defs_folder` hands each asset check back as an
# AssetsDefinition, and building the repository turns it into an AssetChecksDefinition again passing
# the beta `execution_type` parameter (repository_data.py, `get_asset_checks_defs_by_key`).
warnings.filterwarnings("ignore", message=r"Parameter `execution_type` of function", category=dg.BetaWarning)

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources={"warehouse": warehouse_resource()}),
)

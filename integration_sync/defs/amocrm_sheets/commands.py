"""The seed's operator scripts as `integration-sync` commands: `sheet setup` (setup_sheet.py),
`amocrm import-xlsx` (import_xlsx.py), `amocrm webhook register` (the seed's manual hook set-up)."""

from __future__ import annotations

from integration_sync.defs.amocrm_sheets import import_xlsx, sheet_setup, webhook_register
from integration_sync.lib.registry import CommandGroups


def add_commands(groups: CommandGroups) -> None:
    sheet_setup.add_command(groups)
    import_xlsx.add_command(groups)
    webhook_register.add_command(groups)

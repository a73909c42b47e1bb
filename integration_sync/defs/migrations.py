"""Every warehouse migration, the engine's and each registered flow's, applied in id order at first use."""

from __future__ import annotations

from integration_sync.lib.registry import migrations
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.warehouse import Migration

MIGRATIONS: tuple[Migration, ...] = migrations(ENGINE_MIGRATIONS)

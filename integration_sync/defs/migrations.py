"""Every warehouse migration, engine and flows together, applied in id order at first use."""

from __future__ import annotations

from integration_sync.defs.abcp_bitrix24.tables import ABCP_MIGRATIONS
from integration_sync.defs.kaspi_amocrm.tables import KASPI_MIGRATIONS
from integration_sync.defs.payments_amocrm.tables import PAYMENTS_MIGRATIONS
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.warehouse import Migration

MIGRATIONS: tuple[Migration, ...] = (*ENGINE_MIGRATIONS, *ABCP_MIGRATIONS, *KASPI_MIGRATIONS, *PAYMENTS_MIGRATIONS)

"""What every amoCRM index in the warehouse shares: entries scoped by the account, the watermark of
the last incremental refresh (`updated_at`), and saving only what this run learnt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from integration_sync.sync.state import read_lookup, read_state, write_lookup, write_state
from integration_sync.sync.warehouse import Warehouse

V = TypeVar("V")


@dataclass
class AccountIndex(Generic[V]):
    """Key → value of one amoCRM account; subclasses say where it is stored and how values encode."""

    warehouse: Warehouse
    account: str
    entries: dict[str, V] = field(default_factory=dict, kw_only=True)
    watermark: int = field(default=0, kw_only=True)
    refreshed: bool = field(default=False, kw_only=True)
    requests: int = field(default=0, kw_only=True)  # spent on refreshes in this run
    _new: dict[str, V] = field(default_factory=dict, kw_only=True)

    @property
    def scope(self) -> str:
        return f"amocrm:{self.account}"

    @property
    def entity(self) -> str:
        raise NotImplementedError

    @property
    def watermark_key(self) -> str:
        raise NotImplementedError

    def encode(self, value: V) -> str:
        raise NotImplementedError

    def decode(self, text: str) -> V:
        raise NotImplementedError

    def _read(self) -> None:
        self.entries = {k: self.decode(v) for k, v in read_lookup(self.warehouse, self.scope, self.entity).items()}
        self.watermark = int(read_state(self.warehouse, self.scope, self.watermark_key) or 0)

    def save(self) -> None:
        """Persist what was learnt or created in this run, and the watermark."""
        write_lookup(self.warehouse, self.scope, self.entity, {k: self.encode(v) for k, v in self._new.items()})
        self._new.clear()
        if self.refreshed:
            write_state(self.warehouse, self.scope, self.watermark_key, str(self.watermark))

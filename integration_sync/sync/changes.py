"""The sync engine's data types: desired records, changes, outcomes, the destination protocol, the report."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Operation = Literal["create", "update"]
OutcomeStatus = Literal["succeeded", "rejected"]
Mode = Literal["upsert", "create_only", "update_only"]
MODES: tuple[Mode, ...] = ("upsert", "create_only", "update_only")


def content_hash(payload: Mapping[str, Any]) -> str:
    """A stable hash of a payload: key order and whitespace do not matter."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Desired:
    """One target record as the warehouse says it should be; `invalid_reason` means do not send."""

    key: str
    payload: Mapping[str, Any]
    invalid_reason: str | None = None

    @property
    def hash(self) -> str:
        return content_hash(self.payload)


@dataclass(frozen=True)
class Change:
    """One record the engine asks a destination to write."""

    key: str
    operation: Operation
    payload: Mapping[str, Any]
    previous: Mapping[str, Any] | None
    target_ids: Mapping[str, str]
    attempts: int
    hash: str
    in_flight: bool = False
    attempt_hash: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one change: `target_ids` may be partial when a rejected write got halfway."""

    key: str
    status: OutcomeStatus
    operation: str
    target_ids: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


class Destination(Protocol):
    """One target API as the engine sees it. Implementations live in the flows."""

    name: str
    primary_entity: str
    batch_size: int

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """Find target records that already exist for these changes; key -> {entity: id}."""
        ...

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        """Write the changes; one outcome per change. Raise AmbiguousWriteError if unsure."""
        ...

    def requests_used(self) -> int:
        """API requests sent so far (for metadata)."""
        ...


@dataclass(frozen=True)
class FieldDiff:
    """One field of a planned change: a dotted path, the value last pushed and the value to send."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class PlannedChange:
    """A change a dry run would send, with its field-level diff."""

    key: str
    operation: str
    fields: tuple[FieldDiff, ...]


@dataclass
class SyncReport:
    """Counts of one engine run, reported as Dagster metadata."""

    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retried: int = 0
    created: int = 0
    updated: int = 0
    settled: int = 0
    rejected: int = 0
    invalid: int = 0
    parked: int = 0
    waiting: int = 0
    deferred: int = 0
    planned: int = 0
    skipped: int = 0
    api_requests: int = 0
    dry_run: bool = False
    mode: Mode = "upsert"
    rejected_samples: list[tuple[str, str]] = field(default_factory=list)
    invalid_samples: list[tuple[str, str]] = field(default_factory=list)
    plan: list[PlannedChange] = field(default_factory=list)

    @property
    def pushed(self) -> int:
        return self.created + self.updated

    def as_counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "retried": self.retried,
            "created": self.created,
            "updated": self.updated,
            "pushed": self.pushed,
            "settled": self.settled,
            "rejected": self.rejected,
            "invalid": self.invalid,
            "parked": self.parked,
            "waiting": self.waiting,
            "deferred": self.deferred,
            "planned": self.planned,
            "skipped": self.skipped,
            "api_requests": self.api_requests,
        }


def flatten(payload: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted paths (`{"a": {"b": 1}}` → `{"a.b": 1}`); lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in (payload or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def field_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[FieldDiff, ...]:
    """The dotted paths whose value differs between what was last pushed and what would be sent."""
    before, after = flatten(old), flatten(new)
    return tuple(
        FieldDiff(path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path) or (path in before) != (path in after)
    )

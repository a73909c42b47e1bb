"""Two-way sync rules, pure: echoes (our own writes read back) and per-field conflict resolution.

A two-way flow runs two pushes (A → B and B → A), each with its own `sync_state`. Before planning
the push A → B, it reads B's changes and drops the echoes: values equal to what the push B → A last
wrote there (`SyncEngine.last_written`). A field changed on both sides since the last sync is a
conflict, settled by `resolve_field`: the field's declared owner wins, otherwise the newer change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from integration_sync.sync.changes import flatten

Reason = Literal["unchanged", "agreed", "one_side", "owner", "newer"]


def strip_echoes(observed: Mapping[str, Any], last_written: Mapping[str, Any]) -> dict[str, Any]:
    """The fields (dotted paths) of a record read from a target whose value is not the one we last
    wrote there. A field we never wrote counts as changed."""
    written = flatten(last_written)
    return {path: value for path, value in flatten(observed).items() if path not in written or written[path] != value}


@dataclass(frozen=True)
class Resolution:
    """The value a field settles on, which side it came from, whether both sides had changed it, and
    both sides' values (for the conflict's sync_log row)."""

    field: str
    value: Any
    winner: str | None
    conflict: bool
    reason: Reason
    ours: Any = None
    theirs: Any = None


def resolve_field(
    field: str,
    base: Any,
    ours: Any,
    theirs: Any,
    ours_at: datetime | None,
    theirs_at: datetime | None,
    owners: Mapping[str, str],
    *,
    sides: tuple[str, str] = ("ours", "theirs"),
) -> Resolution:
    """Settle one field given its value at the last sync (`base`) and on both sides now.

    Only one side changed: it wins, no conflict. Both changed to different values: the owner named
    in `owners` (a side name from `sides`) wins; otherwise the later of `ours_at` / `theirs_at` (the
    sources' own change times, or the time we first observed the change where a side has none). A
    side with no time at all loses to one with a time; a tie goes to `ours`.
    """
    our_side, their_side = sides

    def settle(winner: str | None, conflict: bool, reason: Reason) -> Resolution:
        value = theirs if winner == their_side else ours
        return Resolution(field, value, winner, conflict, reason, ours, theirs)

    if ours == theirs:
        return settle(None, False, "unchanged" if ours == base else "agreed")
    if theirs == base:
        return settle(our_side, False, "one_side")
    if ours == base:
        return settle(their_side, False, "one_side")
    owner = owners.get(field)
    if owner is not None:
        if owner not in sides:
            raise ValueError(f"owner of {field!r} is {owner!r}, not one of {sides}")
        return settle(owner, True, "owner")
    theirs_newer = theirs_at is not None and (ours_at is None or theirs_at > ours_at)
    return settle(their_side if theirs_newer else our_side, True, "newer")

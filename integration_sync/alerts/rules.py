"""When to alert: pure functions from observations (a run's status, a check's evaluation, a push's
counts) to alert and recovery transitions, against the state each channel last delivered.

A condition alerts once when it starts (the first violation) and once when it ends (the recovery),
never once per tick: the state per channel is a set of firing keys, kept by the caller (the sensor's
cursor), and a channel that failed to deliver keeps its old state, so the transition is retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_REJECTED_SHARE = 0.05


@dataclass(frozen=True)
class Observation:
    """One condition as seen now: `key` names it ("run:kaspi_amocrm"), `violated` says whether it fires,
    `text` describes what was seen (already free of secrets)."""

    key: str
    violated: bool
    text: str


@dataclass(frozen=True)
class Transition:
    key: str
    kind: Literal["alert", "recovery"]
    text: str

    def message(self) -> str:
        head = "ALERT" if self.kind == "alert" else "RECOVERED"
        return f"[integration_sync] {head}: {self.text}"


def transitions(firing: Iterable[str], observations: Sequence[Observation]) -> list[Transition]:
    """What a channel must be told: an alert for each violated key not yet firing, a recovery for
    each firing key now observed clean. Keys not observed this time keep their state."""
    current = set(firing)
    result: list[Transition] = []
    for observation in observations:
        if observation.violated and observation.key not in current:
            result.append(Transition(observation.key, "alert", observation.text))
        elif not observation.violated and observation.key in current:
            result.append(Transition(observation.key, "recovery", observation.text))
    return result


def apply(firing: Iterable[str], delivered: Iterable[Transition]) -> list[str]:
    """The firing keys after these transitions were delivered (sorted, for a stable cursor)."""
    state = set(firing)
    for transition in delivered:
        if transition.kind == "alert":
            state.add(transition.key)
        else:
            state.discard(transition.key)
    return sorted(state)


@dataclass(frozen=True)
class RunFact:
    """A finished run: the flow (or job) it belongs to, whether it failed, and why."""

    subject: str
    run_id: str
    failed: bool
    end_time: float
    error: str = ""


def run_observations(runs: Iterable[RunFact]) -> list[Observation]:
    """The newest finished run of each flow decides: a failure fires, a later success recovers."""
    latest: dict[str, RunFact] = {}
    for run in runs:
        known = latest.get(run.subject)
        if known is None or run.end_time >= known.end_time:
            latest[run.subject] = run
    observations = []
    for subject, run in sorted(latest.items()):
        if run.failed:
            reason = f": {run.error}" if run.error else ""
            text = f"run {run.run_id} of {subject} failed{reason}"
        else:
            text = f"{subject} runs again: run {run.run_id} succeeded"
        observations.append(Observation(f"run:{subject}", run.failed, text))
    return observations


@dataclass(frozen=True)
class CheckFact:
    """The latest evaluation of one asset check."""

    check: str  # "asset/key:check_name"
    passed: bool
    severity: Literal["ERROR", "WARN"]
    description: str = ""


def check_observation(fact: CheckFact, always: frozenset[str] = frozenset()) -> Observation | None:
    """A failing ERROR check fires; a WARN check only when its name is in `always` (e.g.
    `payments_landed`: a payment not in amoCRM in time). None: the check is not alerted on."""
    name = fact.check.rsplit(":", 1)[-1]
    if fact.severity != "ERROR" and name not in always:
        return None
    detail = f" ({fact.description})" if fact.description else ""
    if fact.passed:
        return Observation(f"check:{fact.check}", False, f"check {fact.check} passes again")
    return Observation(f"check:{fact.check}", True, f"check {fact.check} failed{detail}")


@dataclass(frozen=True)
class PushCounts:
    """A push's latest counts (its materialization metadata)."""

    flow: str
    fetched: int
    rejected: int
    parked: int


def rejected_share(counts: PushCounts) -> float:
    """Rejected and parked records against all the push handled: an idle push that fetched nothing but
    re-tried rejected records again counts them against themselves (share 1), not against zero."""
    bad = counts.rejected + counts.parked
    total = max(counts.fetched, bad)
    return bad / total if total else 0.0


def share_observation(counts: PushCounts, threshold: float) -> Observation:
    share = rejected_share(counts)
    text = (
        f"{counts.flow}: {counts.rejected} rejected and {counts.parked} parked of {counts.fetched} fetched "
        f"({share:.1%}, threshold {threshold:.1%})"
    )
    return Observation(f"share:{counts.flow}", share > threshold, text)


def parse_threshold(value: str | None) -> float:
    """`ALERT_REJECTED_SHARE` as a share (0.05) or a percentage ("5%"); default 5 %."""
    text = (value or "").strip()
    if not text:
        return DEFAULT_REJECTED_SHARE
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text)


def firing_state(raw: Mapping[str, Sequence[str]] | None, channels: Iterable[str]) -> dict[str, list[str]]:
    """Each channel's firing keys from a decoded cursor (missing channels start clean)."""
    raw = raw or {}
    return {channel: sorted(set(raw.get(channel, []))) for channel in channels}

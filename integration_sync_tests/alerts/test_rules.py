"""When to alert: first violation and recovery, never once per tick (pure functions, table-tested)."""

from __future__ import annotations

import pytest

from integration_sync.alerts.rules import (
    CheckFact,
    Observation,
    PushCounts,
    RunFact,
    apply,
    check_observation,
    parse_threshold,
    rejected_share,
    run_observations,
    share_observation,
    transitions,
)

BAD = Observation("run:a", True, "a failed")
GOOD = Observation("run:a", False, "a runs again")


@pytest.mark.parametrize(
    ("firing", "observations", "expected"),
    [
        ([], [BAD], [("run:a", "alert")]),  # first violation
        (["run:a"], [BAD], []),  # still failing: nothing new
        (["run:a"], [GOOD], [("run:a", "recovery")]),  # recovery
        ([], [GOOD], []),  # never failed: nothing
        (["run:a"], [], []),  # not observed this tick: state kept, nothing said
        ([], [BAD, Observation("check:x", True, "x")], [("run:a", "alert"), ("check:x", "alert")]),
    ],
)
def test_transitions(firing: list[str], observations: list[Observation], expected: list[tuple[str, str]]) -> None:
    assert [(t.key, t.kind) for t in transitions(firing, observations)] == expected


def test_apply_records_what_was_delivered() -> None:
    (alert,) = transitions([], [BAD])
    assert apply([], [alert]) == ["run:a"]
    (recovery,) = transitions(["run:a"], [GOOD])
    assert apply(["run:a", "check:x"], [recovery]) == ["check:x"]


def test_the_newest_finished_run_of_a_flow_decides() -> None:
    runs = [
        RunFact("kaspi", "r1", failed=True, end_time=1.0, error="boom"),
        RunFact("kaspi", "r2", failed=False, end_time=2.0),
        RunFact("abcp", "r3", failed=False, end_time=1.0),
        RunFact("abcp", "r4", failed=True, end_time=3.0, error="HTTP 500"),
    ]
    observed = {o.key: o for o in run_observations(runs)}
    assert not observed["run:kaspi"].violated
    assert observed["run:abcp"].violated
    assert "r4" in observed["run:abcp"].text and "HTTP 500" in observed["run:abcp"].text


@pytest.mark.parametrize(
    ("fact", "violated"),
    [
        (CheckFact("a/push:target_ids_present", False, "ERROR"), True),
        (CheckFact("a/push:target_ids_present", True, "ERROR"), False),
        (CheckFact("a/push:rejected_share_below_threshold", False, "WARN"), None),  # a WARN check: not alerted
        (CheckFact("amocrm/leads:payments_landed", False, "WARN"), True),  # ...unless named
        (CheckFact("amocrm/leads:payments_landed", True, "WARN"), False),
    ],
)
def test_check_observation(fact: CheckFact, violated: bool | None) -> None:
    observation = check_observation(fact, frozenset({"payments_landed"}))
    assert (observation.violated if observation else None) == violated


@pytest.mark.parametrize(
    ("counts", "share", "violated"),
    [
        (PushCounts("f", fetched=100, rejected=5, parked=0), 0.05, False),  # at the threshold: fine
        (PushCounts("f", fetched=100, rejected=4, parked=2), 0.06, True),  # parked counts too
        (PushCounts("f", fetched=0, rejected=3, parked=0), 1.0, True),  # idle run re-rejecting: not 3/0
        (PushCounts("f", fetched=0, rejected=0, parked=0), 0.0, False),
    ],
)
def test_rejected_share(counts: PushCounts, share: float, violated: bool) -> None:
    assert rejected_share(counts) == pytest.approx(share)
    assert share_observation(counts, 0.05).violated is violated


@pytest.mark.parametrize(("value", "share"), [(None, 0.05), ("", 0.05), ("0.1", 0.1), ("10%", 0.1)])
def test_parse_threshold(value: str | None, share: float) -> None:
    assert parse_threshold(value) == pytest.approx(share)

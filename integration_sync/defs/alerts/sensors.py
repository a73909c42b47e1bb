"""The alerts sensor: every minute it observes finished runs, asset check evaluations and each push's
rejected share, and tells the configured channels (Telegram, e-mail) what started or stopped failing.

One sensor sends everything, with each channel's firing keys in its cursor: a condition is reported
once when it starts and once when it ends, and a channel that failed keeps its old state, so the
message is retried next tick while the other channel does not repeat it. (A `run_failure_sensor`
would advance past a failed run even when Telegram was down, and the alert would be lost.)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dagster as dg

from integration_sync.alerts.notifier import Notifier, summary_subject
from integration_sync.alerts.rules import (
    Observation,
    apply,
    check_observation,
    firing_state,
    parse_threshold,
    run_observations,
    share_observation,
    transitions,
)
from integration_sync.defs.alerts.observe import check_facts, finished_runs, push_counts

logger = logging.getLogger(__name__)

FIRST_LOOK_BACK_S = 86_400.0  # a fresh cursor judges the runs of the last day
ALWAYS_ALERTED_CHECKS = frozenset({"payments_landed"})  # WARN checks whose failure still needs a human


def _decode(cursor: str | None) -> dict[str, Any]:
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def observe(
    context: dg.SensorEvaluationContext,
    runs_after: float,
    known_runs: dict[str, Observation],
    clean: Callable[[str], str],
) -> tuple[list[Observation], float]:
    """Every condition now. Runs are read incrementally, so each flow's last run verdict is kept in
    `known_runs` (updated in place) and judged again every tick: a channel that missed it retries.
    Their texts are kept redacted (`clean`): the cursor shows in the UI."""
    instance = context.instance
    repo = context.repository_def
    runs, newest = finished_runs(instance, repo, runs_after)
    known_runs.update({o.key: replace(o, text=clean(o.text)) for o in run_observations(runs)})
    observations = list(known_runs.values())
    if repo is not None:
        for fact in check_facts(instance, repo.asset_graph.asset_check_keys):
            observation = check_observation(fact, ALWAYS_ALERTED_CHECKS)
            if observation is not None:
                observations.append(observation)
        threshold = parse_threshold(os.environ.get("ALERT_REJECTED_SHARE"))
        observations += [share_observation(counts, threshold) for counts in push_counts(instance, repo)]
    return observations, newest


@dg.sensor(
    name="alerts",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells Telegram and e-mail (ALERT_* settings) when a run fails, an ERROR check fails, a "
    "push rejects or parks over ALERT_REJECTED_SHARE, or a payment is late; once at the start, once at the end.",
)
def alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    notifier = Notifier.from_env(os.environ)
    if not notifier.channels:
        return dg.SkipReason("no alert channel configured: set ALERT_TELEGRAM_* or ALERT_SMTP_URL and ALERT_EMAIL_TO")
    state = _decode(context.cursor)
    runs_after = float(state.get("runs_after") or time.time() - FIRST_LOOK_BACK_S)
    firing = firing_state(state.get("firing"), notifier.names)
    known_runs = {key: Observation(key, bool(v), str(text)) for key, (v, text) in dict(state.get("runs", {})).items()}
    try:
        observations, runs_after = observe(context, runs_after, known_runs, notifier.clean)
        sent, failed = [], []
        for channel in notifier.channels:
            due = transitions(firing[channel.name], observations)
            if not due:
                continue
            text = "\n\n".join(t.message() for t in due)
            if notifier.send(channel, summary_subject(t.kind for t in due), text):
                firing[channel.name] = apply(firing[channel.name], due)
                sent.append(f"{channel.name}: {len(due)}")
            else:
                failed.append(channel.name)
    finally:
        notifier.close()
    runs = {key: [o.violated, o.text] for key, o in known_runs.items()}
    context.update_cursor(json.dumps({"runs_after": runs_after, "runs": runs, "firing": firing}, sort_keys=True))
    if failed:
        done = ", ".join(sent) or "none"
        return dg.SkipReason(f"not delivered by {', '.join(failed)} (retried next tick); sent {done}")
    return dg.SkipReason(f"sent {', '.join(sent)}" if sent else f"nothing new ({len(observations)} conditions watched)")

"""The flow's sensors: the sheet's poll (one read, a run only on change), amoCRM's polling fallback
(changes hooks missed go to the inbox once), the initial sync (launched once per range), the hooks'
dedup window."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.automation import amocrm_lead_poll, initial_sync, sheet_edits
from integration_sync.webhooks.inbox import Inbox
from integration_sync_tests.amocrm_sheets.flow import AMO_TO_SHEET, cells, edit, flow_env, requests_of, row_of, run
from integration_sync_tests.dagster_support import environment


def _tick(sensor: dg.SensorDefinition, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor)
    result = sensor(context)
    if isinstance(result, dg.SkipReason) and context.cursor != cursor:
        return dg.SensorResult(skip_reason=result, cursor=context.cursor)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def test_an_idle_poll_costs_one_read_and_launches_nothing(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    run(env, AMO_TO_SHEET)
    with environment(env):
        first = _tick(sheet_edits, None)
        assert isinstance(first, dg.SensorResult) and first.run_requests  # nothing known yet: one run
        before, amo_before = requests_of(control, "sheets"), requests_of(control, "amocrm-seller")
        idle = _tick(sheet_edits, first.cursor)
        after, amo_after = requests_of(control, "sheets"), requests_of(control, "amocrm-seller")
        assert isinstance(idle, dg.SensorResult) and not idle.run_requests
        assert after["total"] - before["total"] == 1 and after.get("get", 0) - before.get("get", 0) == 1
        assert amo_after["total"] == amo_before["total"]  # polling the sheet costs amoCRM nothing
        rows = cells(control)
        edit(control, cell=f"{layout.letter(layout.ORDER_NO)}{row_of(rows, int(rows[1][0]))}", value="Z-9")
        changed = _tick(sheet_edits, idle.cursor)
        assert isinstance(changed, dg.SensorResult) and len(changed.run_requests or []) == 1
        # a cell no operator acts on (a column amoCRM owns) launches nothing by itself
        edit(control, cell=f"{layout.letter(layout.REGION)}2", value="Boshqa")
        quiet = _tick(sheet_edits, changed.cursor)
        assert isinstance(quiet, dg.SensorResult) and not quiet.run_requests


def test_the_polling_fallback_puts_missed_changes_in_the_inbox_once(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    run(env, AMO_TO_SHEET)
    lead_id = int(cells(control)[1][0])
    with environment(env):
        start = _tick(amocrm_lead_poll, None)
        assert isinstance(start, dg.SensorResult)
        inbox = Inbox(data_dir / "inbox.sqlite")
        seen = inbox.count()
        # no hook is subscribed: this move reaches us only through the poll
        control.post(f"/_sandbox/amocrm-seller/leads/{lead_id}/status", json={"status_id": 142}).raise_for_status()
        found = _tick(amocrm_lead_poll, start.cursor)
        assert inbox.count() == seen + 1
        event = inbox.read_after(0, 1000)[-1]
        assert event.source == "amocrm_poll" and json.loads(event.payload)["id"] == lead_id
        assert event.event_key.startswith(f"amocrm_status:{lead_id}:142:")  # the key its hook would have
        assert isinstance(found, dg.SensorResult)
        _tick(amocrm_lead_poll, str(int(found.cursor or 0)))
        assert inbox.count() == seen + 1  # polled again: the same change is not stored twice


def test_the_initial_sync_is_launched_once_per_range(sandbox_env: dict[str, str], data_dir: Path) -> None:
    env = flow_env(sandbox_env, data_dir, INITIAL_SYNC_DATE_FROM="2026-11-01", INITIAL_SYNC_DATE_TO="2026-11-20")
    with environment(env):
        first = _tick(initial_sync, None)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
        request = (first.run_requests or [])[0]
        assert request.tags["dagster/asset_partition_range_start"] == "2026-11-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-11-20"
        again = _tick(initial_sync, first.cursor)
        assert isinstance(again, dg.SkipReason)
    with environment({**env, "INITIAL_SYNC_DATE_FROM": ""}):
        assert isinstance(_tick(initial_sync, None), dg.SkipReason)


def test_a_wrong_setting_skips_the_sensors_naming_it(sandbox_env: dict[str, str], data_dir: Path) -> None:
    env = flow_env(sandbox_env, data_dir, SHEET_ROTATION_INTERVAL="weekly")
    with environment(env):
        for sensor in (sheet_edits, amocrm_lead_poll, initial_sync):
            result = _tick(sensor, None)
            assert isinstance(result, dg.SkipReason) and "SHEET_ROTATION_INTERVAL" in (result.skip_message or "")
    env = flow_env(sandbox_env, data_dir, GOOGLE_SHEETS_API_URL="", GOOGLE_SERVICE_ACCOUNT_FILE="missing.json")
    with environment(env):
        result = _tick(sheet_edits, None)
        assert isinstance(result, dg.SkipReason) and "GOOGLE_SERVICE_ACCOUNT_FILE" in (result.skip_message or "")


def test_our_own_writes_launch_no_run_but_an_edit_read_by_our_push_does(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    first, second = int(rows[1][0]), int(rows[2][0])
    with environment(env):
        seen = _tick(sheet_edits, None)
        assert isinstance(seen, dg.SensorResult)
        control.post(f"/_sandbox/amocrm-seller/leads/{first}/status", json={"status_id": 142}).raise_for_status()
        run(env, AMO_TO_SHEET, days=40)  # writes «Успешно» into the row: our own write
        assert cells(control)[row_of(cells(control), first) - 1][layout.col(layout.STATUS)] == layout.SUCCESS
        control.post(f"/_sandbox/amocrm-seller/leads/{second}/status", json={"status_id": 143}).raise_for_status()
        run(env, AMO_TO_SHEET, days=40)  # a second push of ours before the poll looks again
        ours = _tick(sheet_edits, seen.cursor)
        assert isinstance(ours, dg.SensorResult) and not ours.run_requests
        # an operator's edit that our next push happens to read first is still an edit for the poll
        edit(control, cell=f"{layout.letter(layout.ORDER_NO)}{row_of(rows, second)}", value="Z-5")
        control.post(f"/_sandbox/amocrm-seller/leads/{first}/status", json={"status_id": 143}).raise_for_status()
        run(env, AMO_TO_SHEET, days=40)
        theirs = _tick(sheet_edits, ours.cursor)
        assert isinstance(theirs, dg.SensorResult) and len(theirs.run_requests or []) == 1

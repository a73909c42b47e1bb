"""Tab rotation at the period boundary in the flow's zone (Asia/Tashkent, UTC+5), against the Sheets
emulator over real HTTP (gspread): rows stay in the archive, a second call does nothing, hourly too;
the Dagster job and schedule around it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.amocrm_sheets.rotation import PERIOD_KEY, period_of, previous_period, rotate
from integration_sync.defs.amocrm_sheets.rotation_job import ROTATION_JOB, ROTATION_SCHEDULE, rotate_sheet_tab
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.defs.amocrm_sheets.sheet_setup import ensure_layout
from integration_sync.lib.push import push_tags
from integration_sync.sandbox.server import SandboxServer
from integration_sync.sandbox.sheets import SHEETS_TOKEN, SPREADSHEET_ID, sheets_env
from integration_sync_tests.amocrm_sheets.flow import book, tab_cells

TASHKENT = ZoneInfo("Asia/Tashkent")
LAST_SECOND_OF_NOV = datetime(2026, 11, 30, 23, 59, 59, tzinfo=TASHKENT)  # 18:59:59 UTC
FIRST_OF_DEC = datetime(2026, 12, 1, 0, 0, 0, tzinfo=TASHKENT)  # 19:00:00 UTC, still November in UTC
ROWS = [["101", "Ali", "+998901112233", "", "", "", "", "0134", "", "В процессе"], ["102", "Vali"]]


@pytest.fixture()
def env(fresh_small_sandbox: SandboxServer, tmp_path: Path) -> dict[str, str]:
    base = fresh_small_sandbox.base_url
    return {**sheets_env(base), "SANDBOX": base, "INTEGRATION_SYNC_DATA_DIR": str(tmp_path)}


def writes(env: dict[str, str]) -> int:
    stats = httpx.get(f"{env['SANDBOX']}/_sandbox/stats", timeout=10).json()["sheets"]["by_method"]
    return int(stats.get("post", 0)) + int(stats.get("put", 0))


def titles(env: dict[str, str]) -> list[str]:
    return [s["properties"]["title"] for s in book(env).fetch_sheet_metadata()["sheets"]]


def started(env: dict[str, str], settings: SheetsSettings, now: datetime, rows: list[list[str]]) -> None:
    """The sheet laid out at `now`, with rows the pushes appended."""
    ensure_layout(book(env), settings, now=now)
    if rows:
        book(env).values_append("'Sheet1'!A1", {"valueInputOption": "RAW"}, {"values": rows})


def test_periods_are_the_flows_zone() -> None:
    assert period_of(LAST_SECOND_OF_NOV, TASHKENT, "monthly") == "2026-11"
    assert period_of(FIRST_OF_DEC, TASHKENT, "monthly") == "2026-12"
    assert period_of(FIRST_OF_DEC, ZoneInfo("UTC"), "monthly") == "2026-11"  # the zone matters
    assert period_of(FIRST_OF_DEC.astimezone(UTC), TASHKENT, "hourly") == "2026-12-01 00h"
    assert previous_period(FIRST_OF_DEC, TASHKENT, "monthly") == "2026-11"
    assert previous_period(datetime(2027, 1, 1, tzinfo=TASHKENT), TASHKENT, "monthly") == "2026-12"
    assert previous_period(FIRST_OF_DEC, TASHKENT, "hourly") == "2026-11-30 23h"
    assert previous_period(LAST_SECOND_OF_NOV, TASHKENT, "monthly") == "2026-10"


def test_monthly_rotation_at_the_boundary_keeps_rows_in_the_archive(env: dict[str, str]) -> None:
    settings = SheetsSettings.from_env(env)
    started(env, settings, datetime(2026, 11, 3, 10, 0, tzinfo=TASHKENT), ROWS)
    before = writes(env)
    early = rotate(book(env), settings, LAST_SECOND_OF_NOV)
    assert not early.rotated and "current period 2026-11" in early.reason and writes(env) == before

    result = rotate(book(env), settings, FIRST_OF_DEC.astimezone(UTC))  # the clock in UTC, the period in Tashkent
    assert result.rotated and result.archived == "2026-11" and result.period == "2026-12"
    assert writes(env) == before + 1  # one atomic batchUpdate (guards: the single batch_update in rotate)
    assert titles(env) == ["Sheet1", "2026-11", "Staff", "Dashboard"]
    archive = tab_cells(env, "2026-11")
    assert archive["rows"] == [list(layout.COLUMNS), *ROWS]  # rows stay where they were, nothing copied
    fresh = tab_cells(env, "Sheet1")
    assert fresh["rows"] == [list(layout.COLUMNS)]
    assert fresh["properties"]["gridProperties"]["frozenRowCount"] == 1
    assert fresh["formats"]["A1"]["textFormat"]["bold"] is True
    assert fresh["validations"][f"{layout.STATUS_LETTER}2"]["strict"] is True
    stamps = {
        s["properties"]["title"]: (s["developerMetadata"][0]["metadataKey"], s["developerMetadata"][0]["metadataValue"])
        for s in book(env).fetch_sheet_metadata()["sheets"]
        if s.get("developerMetadata")
    }
    assert stamps == {"Sheet1": (PERIOD_KEY, "2026-12"), "2026-11": (PERIOD_KEY, "2026-11")}

    again = rotate(book(env), settings, FIRST_OF_DEC + timedelta(hours=5))
    assert not again.rotated and writes(env) == before + 1
    assert tab_cells(env, "2026-11")["rows"] == [list(layout.COLUMNS), *ROWS]


def test_hourly_rotation_names_the_hour_in_the_flows_zone(env: dict[str, str]) -> None:
    settings = SheetsSettings.from_env({**env, "SHEET_ROTATION_INTERVAL": "hourly"})
    started(env, settings, datetime(2026, 11, 30, 14, 5, tzinfo=TASHKENT), ROWS[:1])
    assert not rotate(book(env), settings, datetime(2026, 11, 30, 14, 59, 59, tzinfo=TASHKENT)).rotated
    result = rotate(book(env), settings, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))  # 15:00 in Tashkent
    assert result.archived == "2026-11-30 14h"
    assert tab_cells(env, "2026-11-30 14h")["rows"] == [list(layout.COLUMNS), ROWS[0]]
    assert not rotate(book(env), settings, datetime(2026, 11, 30, 15, 30, tzinfo=TASHKENT)).rotated
    assert titles(env).count("2026-11-30 14h") == 1 and titles(env)[0] == "Sheet1"


def test_an_empty_tab_is_restamped_so_later_rows_are_not_archived_under_the_old_period(env: dict[str, str]) -> None:
    settings = SheetsSettings.from_env(env)
    started(env, settings, datetime(2026, 11, 3, tzinfo=TASHKENT), [])
    quiet = rotate(book(env), settings, FIRST_OF_DEC)
    assert not quiet.rotated and quiet.period == "2026-12" and "no rows" in quiet.reason
    assert titles(env) == ["Sheet1", "Staff", "Dashboard"]  # no empty archive
    book(env).values_append("'Sheet1'!A1", {"valueInputOption": "RAW"}, {"values": ROWS})  # December's orders
    assert not rotate(book(env), settings, datetime(2026, 12, 20, tzinfo=TASHKENT)).rotated  # guards the restamp
    result = rotate(book(env), settings, datetime(2027, 1, 1, tzinfo=TASHKENT))
    assert result.archived == "2026-12" and tab_cells(env, "2026-12")["rows"][1:] == ROWS


def test_unstamped_off_missing_and_taken_titles_do_not_rotate(env: dict[str, str]) -> None:
    settings = SheetsSettings.from_env(env)
    book(env).values_append("'Sheet1'!A1", {"valueInputOption": "RAW"}, {"values": ROWS})
    first = rotate(book(env), settings, FIRST_OF_DEC)  # the seeded tab has no stamp: it holds "now" from here
    assert not first.rotated and first.period == "2026-12"
    assert not rotate(
        book(env), SheetsSettings.from_env({**env, "SHEET_ROTATION_INTERVAL": "off"}), FIRST_OF_DEC + timedelta(days=40)
    ).rotated
    spreadsheet = book(env)
    spreadsheet.add_worksheet("2026-12", rows=5, cols=5)  # an operator's tab already has the archive's title
    taken = rotate(spreadsheet, settings, datetime(2027, 1, 1, tzinfo=TASHKENT))
    assert not taken.rotated and "«2026-12» already exists" in taken.reason
    assert tab_cells(env, "Sheet1")["rows"][1:] == ROWS
    missing = rotate(book(env), SheetsSettings.from_env({**env, "GOOGLE_WORKSHEET_NAME": "Leads"}), FIRST_OF_DEC)
    assert not missing.rotated and "sheet setup" in missing.reason


def test_the_job_and_schedule(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert rotate_sheet_tab.pool == "push:amocrm_sheets" and rotate_sheet_tab.tags == push_tags("amocrm_sheets")
    assert ROTATION_JOB.tags == push_tags("amocrm_sheets") and ROTATION_JOB.name == "amocrm_sheets_rotation_job"
    assert ROTATION_SCHEDULE.cron_schedule == "0 0 1 * *" and ROTATION_SCHEDULE.execution_timezone == "Asia/Tashkent"
    for name in ("GOOGLE_SHEET_ID", "SHEETS_AMO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with dg.instance_for_test() as instance:
        check_job(env, monkeypatch, instance)


def check_job(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance) -> None:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=FIRST_OF_DEC)
    assert isinstance(ROTATION_SCHEDULE(context), dg.SkipReason)  # not configured
    monkeypatch.setenv("GOOGLE_SHEET_ID", SPREADSHEET_ID)
    monkeypatch.setenv("SHEETS_AMO_BASE_URL", f"{env['SANDBOX']}/amocrm-seller")
    request = ROTATION_SCHEDULE(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "rotate@2026-12-01T00:00"

    settings = SheetsSettings.from_env(env)
    started(env, settings, datetime(2026, 11, 3, tzinfo=TASHKENT), ROWS)  # now (real time) is after November
    resource = GoogleSheetResource(
        sheet_id=SPREADSHEET_ID,
        api_url=env["GOOGLE_SHEETS_API_URL"],
        token=SHEETS_TOKEN,
        state_dir=env["INTEGRATION_SYNC_DATA_DIR"],
    )
    result = ROTATION_JOB.execute_in_process(instance=instance, resources={"google_sheet": resource})
    assert result.success
    materialized = result.get_step_success_events()
    assert materialized and "2026-11" in titles(env)
    metadata = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    shown = metadata.event_specific_data.metadata  # type: ignore[union-attr]
    assert shown["archived"].value == "2026-11" and SHEETS_TOKEN not in str(shown)

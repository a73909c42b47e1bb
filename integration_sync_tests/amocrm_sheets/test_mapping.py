"""The seller's pure rules: trigger spellings, stages found by name per pipeline, the display map,
staff codes, operators' edits versus echoes, the status rule when both sides changed, settings."""

from __future__ import annotations

from typing import Any

import pytest

from integration_sync.connectors.amocrm_models import CustomField, Pipeline
from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.mapping import (
    OperatorEdit,
    account_map,
    code_key,
    display_status,
    operator_edit,
    staff_directory,
    target_status,
)
from integration_sync.defs.amocrm_sheets.pushes import settle_status
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings, parse_created_after
from integration_sync.sync.normalize import normalize_phone


def _pipeline(pid: int, name: str, statuses: list[tuple[int, str]]) -> Pipeline:
    data: dict[str, Any] = {
        "id": pid,
        "name": name,
        "_embedded": {"statuses": [{"id": s, "name": n} for s, n in [*statuses, (142, "Успешно"), (143, "Закрыто")]]},
    }
    return Pipeline.model_validate(data)


PIPELINES = [
    _pipeline(1, "Sotuv bo'limi", [(11, "Yangi"), (12, "ЗАКАЗ БЕЗ НУМЕРАЦИИ"), (13, "ЗАКАЗ ОТПРАВЛЕН"), (14, "ОТКАЗ")]),
    _pipeline(2, "SOTUV 2", [(22, "заказ  без нумерации"), (23, "Заказ отправлен")]),  # no reject stage of its own
    _pipeline(3, "Onlayn", [(32, "NOMERATSIYALANMAGAN ZAKAZ")]),
    _pipeline(4, "Servis", [(42, "ЗАКАЗ БЕЗ НУМЕРАЦИИ")]),
]
FIELDS = [
    CustomField.model_validate({"id": 100 + i, "name": name, "enums": None})
    for i, name in enumerate(["Продукт", "Дата заказа", "Регион", "Код сотрудника", "Заказ №"])
]
ENV = {
    "TRIGGER_STATUS_NAME": "ЗАКАЗ БЕЗ НУМЕРАЦИИ",
    "TRIGGER_STATUS_NAMES": "NOMERATSIYALANMAGAN ZAKAZ",
    "PIPELINE_KEYWORD": "sotuv",
}


def test_pipelines_by_keyword_and_stages_by_name_in_every_spelling() -> None:
    account = account_map(PIPELINES, FIELDS, SheetsSettings.from_env(ENV))
    assert sorted(account.pipelines) == [1, 2]  # "Onlayn" and "Servis" lack the keyword
    first, second = account.pipelines[1], account.pipelines[2]
    assert first.trigger_ids == {12} and second.trigger_ids == {22}  # case and doubled spaces ignored
    assert (first.sent_id, first.reject_id) == (13, 14)
    assert (second.sent_id, second.reject_id) == (23, 143)  # no «Отказ» stage: 143
    assert account.fields["Заказ №"] == 104 and not account.problems
    # PIPELINE_ID serves a pipeline without the keyword; TRIGGER_STATUS_ID adds a trigger
    chosen = account_map(PIPELINES, FIELDS, SheetsSettings.from_env({**ENV, "PIPELINE_ID": "3"}))
    assert sorted(chosen.pipelines) == [1, 2, 3] and chosen.pipelines[3].trigger_ids == {32}
    by_id = account_map(PIPELINES, FIELDS, SheetsSettings.from_env({**ENV, "TRIGGER_STATUS_ID": "11"}))
    assert by_id.pipelines[1].trigger_ids == {11, 12}
    missing = account_map(PIPELINES, FIELDS[:-1], SheetsSettings.from_env({**ENV, "PIPELINE_KEYWORD": "nope"}))
    assert any("PIPELINE_KEYWORD" in p for p in missing.problems) and any("Заказ №" in p for p in missing.problems)


def test_the_seeds_display_map() -> None:
    assert display_status("ЗАЗАЗ БЕЗ НУМЕРАЦИИ", "trigger") == layout.IN_PROGRESS
    assert display_status("Заказ отправлен", "sent") == layout.AT_COURIER
    assert display_status("OTKAZ", "other") == layout.REFUSED
    assert display_status("Закрыто и не реализовано", "lost") == layout.REFUSED
    assert display_status("Успешно реализовано", "won") == layout.SUCCESS
    assert display_status("Думает", "other") == "Думает"


def test_staff_codes_match_with_or_without_leading_zeros() -> None:
    staff = staff_directory(
        [["№", "Код сотрудника", "Сотрудник"], ["1", "0134", "BAHODIR"], [], ["2", "152 ", "DILNOZA"]]
    )
    assert staff[code_key("134")] == "BAHODIR" and staff[code_key("00152")] == "DILNOZA"
    assert code_key("000") == "0" and code_key("") == ""


def test_our_echo_is_not_an_edit_and_an_operators_choice_is() -> None:
    assert operator_edit(layout.AT_COURIER, "", layout.AT_COURIER, "").empty  # «У курера» written by us
    assert operator_edit(layout.AT_COURIER, "", layout.IN_PROGRESS, "").choice == layout.AT_COURIER
    assert operator_edit(layout.IN_PROGRESS, "Z-1", layout.IN_PROGRESS, "").order_no == "Z-1"
    assert operator_edit(layout.IN_PROGRESS, "Z-1", layout.IN_PROGRESS, "Z-1").empty
    typo = operator_edit("Отменён", "", layout.IN_PROGRESS, "")
    assert typo.problem and typo.choice is None


def test_where_an_edit_moves_the_lead() -> None:
    settings = SheetsSettings.from_env(ENV)
    first = account_map(PIPELINES, FIELDS, settings).pipelines[1]
    assert target_status(OperatorEdit(choice=layout.AT_COURIER), first, "sent", settings) == 142
    assert target_status(OperatorEdit(choice=layout.SUCCESS), first, "trigger", settings) == 142
    assert target_status(OperatorEdit(choice=layout.REFUSED), first, "trigger", settings) == 14
    assert target_status(OperatorEdit(order_no="Z-1"), first, "trigger", settings) == 13
    assert target_status(OperatorEdit(order_no="Z-1"), first, "won", settings) is None  # never back out of won
    mapped = SheetsSettings.from_env({**ENV, "DROPDOWN_STATUS_MAP_JSON": '{"Отказ": {"1": 11}, "Успешно": 142}'})
    assert target_status(OperatorEdit(choice=layout.REFUSED), first, "trigger", mapped) == 11


def test_the_status_rule_when_both_sides_changed() -> None:
    shown, held, done = layout.IN_PROGRESS, layout.REFUSED, layout.SUCCESS
    assert settle_status(shown, None, None, None) == (shown, True, None)  # a new row
    assert settle_status(layout.AT_COURIER, shown, shown, None)[:2] == (layout.AT_COURIER, True)  # amoCRM moved
    assert settle_status(shown, held, shown, None)[:2] == (shown, False)  # the operator's edit is held
    value, write, conflict = settle_status(done, held, shown, None)  # both moved: amoCRM wins, logged
    assert (value, write) == (done, True) and conflict is not None and conflict.conflict
    assert settle_status(done, layout.AT_COURIER, shown, layout.AT_COURIER)[2] is None  # our own move, no conflict
    assert settle_status(shown, "Отменён", shown, None)[:2] == (shown, True)  # a typo is replaced


def test_settings_name_the_variable_they_refuse() -> None:
    assert parse_created_after("01.11.2026 00:00:00") == 1793491200
    assert parse_created_after("1793491200") == 1793491200 and parse_created_after("") == 0
    for env, variable in [
        ({"LEADS_CREATED_AFTER": "yesterday"}, "LEADS_CREATED_AFTER"),
        ({"SYNC_POLL_SECONDS": "1"}, "SYNC_POLL_SECONDS"),
        ({"SHEET_ROTATION_INTERVAL": "weekly"}, "SHEET_ROTATION_INTERVAL"),
        ({"DROPDOWN_STATUS_MAP_JSON": "{bad"}, "DROPDOWN_STATUS_MAP_JSON"),
        ({"SHEETS_TIMEZONE": "Mars/Olympus"}, "SHEETS_TIMEZONE"),
        ({"INITIAL_SYNC_DATE_FROM": "2026-02-01", "INITIAL_SYNC_DATE_TO": "2026-01-01"}, "INITIAL_SYNC_DATE_TO"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            SheetsSettings.from_env(env)


def test_uzbek_phones_as_operators_type_them() -> None:
    for typed in ("8901234567", "90 123 45 67", "+998 (90) 123-45-67", "998901234567"):
        assert normalize_phone(typed, "UZ") == "+998901234567"
    assert normalize_phone("89991234567", "RU") == "+79991234567"

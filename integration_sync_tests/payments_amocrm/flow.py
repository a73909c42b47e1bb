"""Helpers to run the payments_amocrm flow through Dagster against the amoCRM emulator, with payments
delivered through the real webhook receiver (tests and benchmarks)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from integration_sync.defs.payments_amocrm.assets import payment_events
from integration_sync.defs.payments_amocrm.checks import payments_applied_once, payments_landed
from integration_sync.defs.payments_amocrm.definitions import FLOW, amocrm_payment_leads
from integration_sync.defs.resources import warehouse_resource
from integration_sync.sandbox.platform import sign
from integration_sync.sync.warehouse import Warehouse
from integration_sync.webhooks.models import MOSCOW
from integration_sync_tests.dagster_support import asset_metadata, environment, materialize_range

ASSETS = [payment_events, amocrm_payment_leads]
CHECKS = FLOW.all_checks
SECRET = "test-platform-secret"
PUSH_NODE = "amocrm__payment_leads"

BASE: dict[str, Any] = {
    "course_order": {
        "status": "CONFIRMED",
        "amount": 100,
        "created_at": "2025-01-20 14:49:20",
        "updated_at": "2025-01-20 14:49:20",
        "code": "PROMO2025",
        "payment_id": "pay_67890",
        "invoice_id": "inv_12345",
        "payment_method": "SBP",
        "currency": "RUB",
        "course_order_items": [
            {
                "cost": 5000,
                "number_lessons": 10,
                "course": {"name": "Годовой 2к25 стандарт", "subject": {"name": "Русский", "project": "ЕГЭ"}},
                "package_id": None,
            },
            {
                "cost": 5000,
                "number_lessons": 10,
                "course": {"name": "Годовой 2к25 стандарт", "subject": {"name": "Обществознание", "project": "ЕГЭ"}},
                "package_id": None,
            },
        ],
        "user": {
            "first_name": "Иван",
            "last_name": "Петров",
            "phone": "89991234567",
            "email": "ivan@example.com",
            "telegram_id": "123456789",
            "telegram_tag": "ivan",
        },
        "utm": {"source": "platform", "medium": "direct", "compaign": "summer2025", "term": "", "content": ""},
        "domain": "pl.el-ed.ru",
    }
}


def today() -> date:
    return datetime.now(MOSCOW).date()


def payment(
    payment_id: str, *, user: Mapping[str, Any] | None = None, paid_at: datetime | None = None, **order: Any
) -> dict[str, Any]:
    """The seed's sample payment with another id (and any field of `course_order` replaced)."""
    body = copy.deepcopy(BASE)
    course_order = body["course_order"]
    course_order["payment_id"] = payment_id
    course_order["invoice_id"] = f"inv_{payment_id}"
    when = paid_at or datetime.now(MOSCOW) - timedelta(minutes=1)
    course_order["created_at"] = course_order["updated_at"] = when.astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")
    if user is not None:
        course_order["user"] = dict(user)
    course_order.update(order)
    return body


def signed(body: Mapping[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return raw, sign(raw, secret)


def deliver(receiver_url: str, *bodies: Mapping[str, Any]) -> list[int]:
    """POST signed payments to the receiver; their HTTP statuses."""
    statuses = []
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            raw, headers = signed(body)
            statuses.append(client.post(f"{receiver_url}/webhook/payment", content=raw, headers=headers).status_code)
    return statuses


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        "WEBHOOK_INBOX_PATH": str(data_dir / "inbox.sqlite"),
        "PLATFORM_WEBHOOK_SECRET": SECRET,
        "PAYMENTS_RETRY_BACKOFF_S": "0",
        "PAYMENTS_DEFAULT_COUNTRY": "RU",
    }
    env.update(overrides)
    return env


def resources() -> dict[str, Any]:
    return {"warehouse": warehouse_resource(), **FLOW.resources()}


def run_flow(
    env: Mapping[str, str],
    *,
    first_day: date | None = None,
    last_day: date | None = None,
    selection: Sequence[Any] = (*ASSETS, *CHECKS),
    push_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Load the days' payments from the inbox (yesterday and today by default, as the hourly
    reconciliation does) and push, in one run."""
    return materialize_range(
        env,
        selection,
        resources,
        first_day=first_day or today() - timedelta(days=1),
        last_day=last_day or today(),
        push=(amocrm_payment_leads, PUSH_NODE),
        push_config=push_config or {},
        raise_on_error=raise_on_error,
    )


def push(env: Mapping[str, str], raise_on_error: bool = True, **config: Any) -> dg.ExecuteInProcessResult:
    """The push alone (the retry schedule's and re-drive's job)."""
    with environment(env):
        return dg.materialize(
            [amocrm_payment_leads, payments_applied_once, payments_landed],
            resources=resources(),
            instance=dg.DagsterInstance.ephemeral(),
            run_config={"ops": {PUSH_NODE: {"config": config}}},
            raise_on_error=raise_on_error,
            selection=[amocrm_payment_leads],
        )


def lose_warehouse(data_dir: Path) -> None:
    """Delete the warehouse of `flow_env(…, data_dir)` (its WAL and lock too); the inbox stays."""
    for path in data_dir.glob("warehouse.duckdb*"):
        if path.is_file():
            path.unlink()


def push_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return asset_metadata(result, PUSH_NODE)


def events_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return asset_metadata(result, "platform__payment_events")


def warehouse(env: Mapping[str, str]) -> Warehouse:
    with environment(env):
        return warehouse_resource().warehouse()


def event_log(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    with warehouse(env).connect() as conn:
        cursor = conn.execute("SELECT * FROM payment_event_log")
        names = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def amo(control: httpx.Client, kind: str) -> list[dict[str, Any]]:
    rows: Any = control.get(f"/_sandbox/amocrm/{kind}").json()
    return list(rows)


def amo_requests(control: httpx.Client) -> int:
    return int(control.get("/_sandbox/stats").json()["amocrm"]["requests"])


def field(entity: Mapping[str, Any], field_id: int | str) -> Any:
    """The first value of a custom field, by id or code."""
    for item in entity.get("custom_fields_values") or []:
        if str(item.get("field_id")) == str(field_id) or item.get("field_code") == field_id:
            values = item.get("values") or []
            return values[0].get("value") if values else None
    return None


def enum_ids(entity: Mapping[str, Any], field_id: int) -> list[int]:
    for item in entity.get("custom_fields_values") or []:
        if item.get("field_id") == field_id:
            return [int(v["enum_id"]) for v in item.get("values") or []]
    return []


class AmoApi:
    """Test set-up straight through the amoCRM emulator's API (long-lived token), as a manager's
    changes in amoCRM would be: contacts and leads the flow must then find."""

    def __init__(self, sandbox_url: str) -> None:
        from integration_sync.sandbox.amocrm_schema import AMO_LONG_LIVED_TOKEN

        self.client = httpx.Client(
            base_url=f"{sandbox_url}/amocrm/api/v4", headers={"Authorization": f"Bearer {AMO_LONG_LIVED_TOKEN}"}
        )

    def _post(self, path: str, body: list[dict[str, Any]]) -> int:
        for _ in range(20):
            answer = self.client.post(path, json=body)
            if answer.status_code != 429:
                answer.raise_for_status()
                return int(answer.json()["_embedded"][path.split("/")[-1]][0]["id"])
            time.sleep(0.3)
        raise AssertionError("amoCRM emulator kept throttling the set-up")

    def contact(self, name: str, **values: Any) -> int:
        from integration_sync.sandbox import amocrm_schema as ids

        fields: list[dict[str, Any]] = []
        if "phone" in values:
            fields.append({"field_code": "PHONE", "values": [{"value": values["phone"], "enum_code": "MOB"}]})
        if "email" in values:
            fields.append({"field_code": "EMAIL", "values": [{"value": values["email"], "enum_code": "WORK"}]})
        if "tg" in values:
            fields.append({"field_id": ids.AMO_CONTACT_FIELD_TG_ID, "values": [{"value": values["tg"]}]})
        if "username" in values:
            fields.append({"field_id": ids.AMO_CONTACT_FIELD_TG_USERNAME, "values": [{"value": values["username"]}]})
        return self._post("contacts", [{"name": name, "custom_fields_values": fields}])

    def lead(self, contact_id: int, pipeline_id: int, status_id: int, **values: Any) -> int:
        from integration_sync.sandbox import amocrm_schema as ids

        fields: list[dict[str, Any]] = []
        if "total" in values:
            fields.append({"field_id": ids.AMO_LEAD_FIELD_TOTAL_PAID, "values": [{"value": values["total"]}]})
        if "count" in values:
            fields.append({"field_id": ids.AMO_LEAD_FIELD_PURCHASE_COUNT, "values": [{"value": values["count"]}]})
        if values.get("subjects"):
            fields.append(
                {
                    "field_id": ids.AMO_LEAD_FIELD_SUBJECTS,
                    "values": [{"enum_id": ids.AMO_SUBJECT_ENUMS[s]} for s in values["subjects"]],
                }
            )
        body: dict[str, Any] = {
            "name": values.get("name", "Сделка менеджера"),
            "pipeline_id": pipeline_id,
            "status_id": status_id,
            "_embedded": {"contacts": [{"id": contact_id}]},
        }
        if fields:
            body["custom_fields_values"] = fields
        if "updated_at" in values:
            body["updated_at"] = values["updated_at"]
        return self._post("leads", [body])

    def get(self, kind: str, entity_id: int) -> dict[str, Any]:
        answer = self.client.get(f"{kind}/{entity_id}", params={"with": "contacts"})
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def close(self) -> None:
        self.client.close()

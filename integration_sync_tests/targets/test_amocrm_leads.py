"""The shared amoCRM lead index by external key, against the amoCRM emulator over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient, Lead
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sandbox import amocrm_schema as schema
from integration_sync.targets.amocrm_leads import AmoLeadIndex, LeadKeyRule
from integration_sync_tests.connectors.sandbox_support import Sandbox

PIPELINE = schema.AMO_PIPELINE_ID
CODE_FIELD = schema.AMO_LEAD_ORDER_CODE_FIELD_ID


def lead(code: str, *, field: bool = True, pipeline: int = PIPELINE) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"Kaspi №{code}", "pipeline_id": pipeline}
    if field:
        body["custom_fields_values"] = [{"field_id": CODE_FIELD, "values": [{"value": code}]}]
    return body


def answered(client: AmoCrmClient) -> int:
    """Requests amoCRM served: a 429 retried under a busy machine's timing is not the index's cost."""
    return int(client.stats.requests - client.stats.throttled)


def rule(field_id: int | None = CODE_FIELD) -> LeadKeyRule:
    return LeadKeyRule(kind="kaspi order code", pipeline_id=PIPELINE, field_id=field_id, name_prefix="Kaspi №")


def test_key_by_field_when_configured_else_by_name() -> None:
    with_field = Lead.model_validate(
        {
            "id": 1,
            "name": "renamed by a manager",
            "custom_fields_values": [{"field_id": 5, "values": [{"value": "77"}]}],
        }
    )
    by_name = Lead.model_validate({"id": 2, "name": "Kaspi №88"})
    other = Lead.model_validate({"id": 3, "name": "Сделка с сайта"})
    assert rule(5).key_of(with_field) == "77" and rule(5).key_of(by_name) == "88"
    assert rule(None).key_of(with_field) is None and rule(None).key_of(other) is None


def test_first_read_pages_by_250_then_only_what_changed(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    made = client.create_leads([lead(str(n)) for n in range(300)])
    client.create_leads([lead("site", pipeline=schema.AMO_PIPELINE_SITE)])
    # the newest change stands alone in its second, so the watermark's second (read again, inclusive)
    # holds one lead, not every lead created in the same second as the last batch
    time.sleep(1.1)
    client.update_leads([{"id": made[1].id, "price": 7}])
    index = AmoLeadIndex.load(store, client.root, rule())
    before = answered(client)
    index.refresh(client)
    assert answered(client) - before == 2  # 300 leads of the pipeline, 250 per page
    assert len(index.entries) == 300 and index.get("7") is not None and index.get("site") is None
    assert index.get("7").lead_id == str(made[7].id)  # type: ignore[union-attr]
    index.save()

    # a later run (a new process) reads only leads updated since the watermark (a second later:
    # leads of the watermark's own second are read again)
    time.sleep(1.1)
    client.update_leads([{"id": made[0].id, "price": 5}])
    again = AmoLeadIndex.load(store, client.root, rule())
    assert len(again.entries) == 300 and again.watermark == index.watermark
    before = answered(client)
    again.refresh(client)
    assert answered(client) - before == 1
    assert again.get("0") is not None


def test_a_key_doubled_in_amocrm_keeps_the_oldest_lead(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    first = client.create_leads([lead("5")])[0]
    client.create_leads([lead("5", field=False)])
    index = AmoLeadIndex.load(store, client.root, rule())
    index.refresh(client)
    assert index.get("5").lead_id == str(first.id)  # type: ignore[union-attr]

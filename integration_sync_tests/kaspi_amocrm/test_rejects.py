"""One order the loader cannot store is quarantined with its reason; the rest of the day loads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync_tests.dagster_support import asset_metadata
from integration_sync_tests.kaspi_amocrm.flow import ASSETS, flow_env, run_flow


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> dict[str, str]:
    control.post("/_sandbox/reset", json={"seed": 5, "kaspi_orders": 20, "days": 1}).raise_for_status()
    return flow_env(sandbox_env, data_dir)


def test_an_unstorable_order_is_quarantined_and_the_day_loads(env: dict[str, str], control: httpx.Client) -> None:
    good = control.get("/_sandbox/kaspi/orders").json()[0]
    now_ms = int(datetime.now(KAZAKHSTAN).timestamp() * 1000)
    bad_parts: list[dict[str, Any]] = [
        {"kaspiDelivery": {"waybillNumber": 2**70}},  # an integer no 64-bit column or encoder takes
        {"customer": {**good["attributes"]["customer"], "id": 2**64}},  # a customer id past 64 bits
    ]
    raw = []
    for n, part in enumerate(bad_parts):
        attributes = {**good["attributes"], "code": f"99800{n}", "creationDate": now_ms, **part}
        raw.append({**good, "id": f"bad{n}", "attributes": attributes})
    control.post("/_sandbox/kaspi/orders/raw", content=_dumps(raw), headers={"content-type": "application/json"})
    result = run_flow(env, days=0, selection=ASSETS[:1], raise_on_error=False)
    assert result.success
    store = WarehouseResource(database=env["WAREHOUSE_PATH"]).warehouse()
    with store.connect() as conn:
        stored = {r[0] for r in conn.execute("SELECT code FROM kaspi_orders").fetchall()}
        rejects = conn.execute(
            "SELECT record_key, reason FROM ingest_rejects WHERE flow = 'kaspi_amocrm' ORDER BY 1"
        ).fetchall()
    codes = {o["attributes"]["code"] for o in control.get("/_sandbox/kaspi/orders").json()}
    assert stored == codes - {"998000", "998001"}
    assert [r[0] for r in rejects] == ["998000", "998001"]
    assert "64-bit" in rejects[0][1] and "64-bit" in rejects[1][1]
    meta = asset_metadata(result, "kaspi__orders")
    assert meta["quarantined"] == 2 and "998000" in str(meta["quarantined_sample"])
    # a reload of the day quarantines them once, not twice
    assert run_flow(env, days=0, selection=ASSETS[:1]).success
    with store.connect() as conn:
        assert conn.execute("SELECT count(*) FROM ingest_rejects").fetchall() == [(2,)]
        assert conn.execute("SELECT count(*) FROM kaspi_orders").fetchall() == [(len(codes) - 2,)]


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=True).encode()

"""One bad ABCP user never fails a load: it is quarantined in `ingest_rejects` with its reason while
the rest of the day loads and reaches Bitrix24; users shaped like real traffic (numbers, lists,
null balance, no saldo) are stored with their raw JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx

from integration_sync_tests.abcp_bitrix24.flow import entities, flow_env, run_flow, today, warehouse
from integration_sync_tests.dagster_support import asset_metadata


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_unstorable_users_are_quarantined_and_the_day_still_loads(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    """Guards tables._stage's per-record try/except and _record_rejects' insert of `unstorable`."""
    env = flow_env(sandbox_env, data_dir)
    day = today() - timedelta(days=1)  # a whole day of seeded users, whatever the time now
    stamp = day.isoformat() + " 10:00:00"
    huge = 2**70  # a JSON number no 64-bit integer holds
    bad = [
        {"userId": huge, "registrationDate": stamp, "updateTime": stamp},
        {"userId": "555000301", "registrationDate": stamp, "updateTime": stamp, "info": _nested(300)},
        {"userId": "555000302", "registrationDate": stamp, "updateTime": stamp, "saldo": huge},
    ]
    real_shape = {
        "userId": 555000303,  # a number, as some real values are
        "registrationDate": stamp,
        "updateTime": stamp,
        "name": "Ольга",
        "surname": "Петрова",
        "mobile": "+7 916 555-03-03",
        "inn": 7701234567,
        "balance": None,
        "deliveryAddressZones": [{"id": "2", "name": "МКАД"}],
        "regionId": 77,
    }
    control.post("/_sandbox/abcp/raw_users", json=[*bad, real_shape]).raise_for_status()

    result = run_flow(env, first_day=day)
    assert result.success
    assert asset_metadata(result, "abcp__users")["invalid"] >= 3
    with warehouse(env).connect() as conn:
        rejects = conn.execute(
            "SELECT record_key, reason, raw FROM ingest_rejects WHERE source = 'users' ORDER BY record_key"
        ).fetchall()
        stored = conn.execute("SELECT inn, balance, saldo, raw FROM abcp_users WHERE user_id = '555000303'").fetchall()
        zones = conn.execute("SELECT count(*) FROM abcp_users WHERE json_type(raw, '$.deliveryAddressZones') = 'ARRAY'")
        with_zones = zones.fetchone()
    reasons = {key: reason for key, reason, _ in rejects}
    assert reasons[str(huge)] == "cannot be stored: Integer exceeds 64-bit range"
    assert reasons["555000301"].startswith("cannot be stored: Recursion limit")
    assert reasons["555000302"] == "cannot be stored: Integer exceeds 64-bit range"
    assert all(json.loads(raw) for _, _, raw in rejects)  # something to look at, kept as text

    inn, balance, saldo, raw = stored[0]
    assert (inn, balance, saldo) == ("7701234567", None, None)
    assert json.loads(raw)["deliveryAddressZones"] == [{"id": "2", "name": "МКАД"}]
    assert with_zones is not None and with_zones[0] > 1  # seeded users carry lists too

    uf = env["UF_B24_DEAL_ABCP_USER_ID"]
    deals = {str(d.get(uf)): d for d in entities(control, "deals")}
    assert deals["555000303"][env["UF_B24_DEAL_INN"]] == "7701234567"
    assert not {"555000301", "555000302", str(huge)} & set(deals)

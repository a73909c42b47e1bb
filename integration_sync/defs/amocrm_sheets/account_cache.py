"""The seller account's map (served pipelines, their stages, the lead fields by name), kept in the
warehouse for 15 minutes: a run that moves a few leads does not pay two reads of the account's
structure every time. The key holds the settings it was built with, so a changed `.env` rebuilds it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.defs.amocrm_sheets.amo_source import load_account_map
from integration_sync.defs.amocrm_sheets.mapping import AccountMap, PipelineMap
from integration_sync.defs.amocrm_sheets.settings import FLOW, SheetsSettings
from integration_sync.sync.state import read_state, write_state
from integration_sync.sync.warehouse import Warehouse

MAX_AGE_S = 900.0


def _key(settings: SheetsSettings) -> str:
    relevant = [
        settings.pipeline_keyword,
        settings.pipeline_id,
        settings.trigger_status_id,
        sorted(settings.trigger_names),
        sorted(settings.field_ids.items()),
    ]
    return "account_map:" + hashlib.sha256(json.dumps(relevant, ensure_ascii=False).encode()).hexdigest()[:16]


def _encode(account: AccountMap) -> str:
    pipelines = [
        {**asdict(p), "statuses": list(p.statuses.items()), "trigger_ids": sorted(p.trigger_ids)}
        for p in account.pipelines.values()
    ]
    return json.dumps(
        {
            "at": time.time(),
            "pipelines": pipelines,
            "fields": dict(account.fields),
            "enums": list(account.enums.items()),
            "problems": list(account.problems),
        },
        ensure_ascii=False,
    )


def _decode(text: str) -> tuple[float, AccountMap]:
    data = json.loads(text)
    pipelines = {
        int(p["id"]): PipelineMap(
            int(p["id"]),
            str(p["name"]),
            {int(k): str(v) for k, v in p["statuses"]},
            frozenset(int(i) for i in p["trigger_ids"]),
            p["sent_id"],
            int(p["reject_id"]),
            int(p["won_id"]),
        )
        for p in data["pipelines"]
    }
    enums = {int(k): str(v) for k, v in data["enums"]}
    return float(data["at"]), AccountMap(pipelines, dict(data["fields"]), enums, tuple(data["problems"]))


def cached_account_map(
    store: Warehouse, client: AmoCrmClient, settings: SheetsSettings, *, max_age_s: float = MAX_AGE_S
) -> AccountMap:
    key = _key(settings)
    stored = read_state(store, FLOW, key)
    if stored:
        try:
            at, account = _decode(stored)
        except (KeyError, TypeError, ValueError):
            at = 0.0
        if time.time() - at < max_age_s:
            return account
    account = load_account_map(client, settings)
    write_state(store, FLOW, key, _encode(account))
    return account

"""`integration-sync inspect amocrm|bitrix24|sheets`: what an account holds that `.env` names (the seeds'
`inspect_amo.py`): amoCRM pipelines with statuses, lead and contact custom fields with enums, catalogs
and a few leads; Bitrix24 deal categories, their stages and deal UF fields; the seller's sheet
(`inspect_sheets.py`). Read-only."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from integration_sync.defs.resources import (
    AmoCrmResource,
    Bitrix24Resource,
    account_var,
    amocrm_resource,
    bitrix24_resource,
)
from integration_sync.lib.registry import plugin

SAMPLE_LEADS = 5


def account_prefix(flow: str | None) -> str:
    """The variable prefix of a flow's account (`KASPI_`, `PAYMENTS_`, `ABCP_`); none: the shared one."""
    return plugin(flow).account_prefix if flow else ""


class NotConfigured(Exception):
    """The account's address is not set (the message names the variables)."""


def _require(prefix: str, name: str) -> None:
    if not os.environ.get(account_var(prefix, name), "").strip():
        raise NotConfigured(f"{prefix}{name} (or {name}) is not set" if prefix else f"{name} is not set")


def amocrm_account(flow: str | None) -> AmoCrmResource:
    _require(account_prefix(flow), "AMO_BASE_URL")
    resource: AmoCrmResource = amocrm_resource(account_prefix(flow)).process_config_and_initialize()
    return resource


def bitrix24_account(flow: str | None) -> Bitrix24Resource:
    _require(account_prefix(flow), "B24_WEBHOOK_URL")
    resource: Bitrix24Resource = bitrix24_resource(account_prefix(flow)).process_config_and_initialize()
    return resource


def amocrm_report(flow: str | None) -> dict[str, Any]:
    with amocrm_account(flow).client() as client:
        pipelines = [
            {
                "id": p.id,
                "name": p.name,
                "is_main": bool(p.is_main),
                "statuses": [{"id": s.id, "name": s.name, "sort": s.sort} for s in p.embedded.statuses],
            }
            for p in client.list_pipelines()
        ]
        fields = {
            entity: [
                {
                    "id": f.id,
                    "name": f.name,
                    "code": f.code,
                    "type": f.type,
                    "enums": [{"id": e.id, "value": e.value} for e in f.enums],
                }
                for f in client.list_custom_fields(entity)
            ]
            for entity in ("leads", "contacts")
        }
        catalogs = []
        for catalog in client.list_catalogs():
            catalog_fields = client.list_custom_fields(f"catalogs/{catalog.id}")
            catalogs.append(
                {
                    "id": catalog.id,
                    "name": catalog.name,
                    "type": catalog.type,
                    "fields": [{"id": f.id, "name": f.name, "code": f.code, "type": f.type} for f in catalog_fields],
                }
            )
        leads = []
        for lead in client.iter_leads(limit=SAMPLE_LEADS):
            leads.append(
                {
                    "id": lead.id,
                    "name": lead.name,
                    "pipeline_id": lead.pipeline_id,
                    "status_id": lead.status_id,
                    "price": lead.price,
                    "custom_fields": {
                        str(v.field_id): [x.enum_id if x.enum_id is not None else x.value for x in v.values or []]
                        for v in lead.custom_fields_values or []
                    },
                }
            )
            if len(leads) >= SAMPLE_LEADS:
                break
    return {
        "system": "amocrm",
        "flow": flow,
        "pipelines": pipelines,
        "lead_fields": fields["leads"],
        "contact_fields": fields["contacts"],
        "catalogs": catalogs,
        "sample_leads": leads,
    }


def bitrix24_report(flow: str | None) -> dict[str, Any]:
    with bitrix24_account(flow).client() as client:
        categories = []
        for row in client.iter_list("crm.category.list", params={"entityTypeId": 2}):
            cid = int(row.get("id") or 0)
            entity = "DEAL_STAGE" if cid == 0 else f"DEAL_STAGE_{cid}"
            stages = [
                {"status_id": s.get("STATUS_ID"), "name": s.get("NAME"), "sort": s.get("SORT")}
                for s in client.iter_list("crm.status.list", filter={"ENTITY_ID": entity})
            ]
            categories.append({"id": cid, "name": row.get("name"), "stages": stages})
        fields = [
            {
                "field_name": f.get("FIELD_NAME"),
                "type": f.get("USER_TYPE_ID"),
                "label": _label(f.get("EDIT_FORM_LABEL")),
                "multiple": f.get("MULTIPLE") == "Y",
            }
            for f in client.iter_list("crm.deal.userfield.list", filter={"LANG": "ru"})
        ]
    return {"system": "bitrix24", "flow": flow, "categories": categories, "deal_fields": fields}


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("ru") or value.get("en") or next(iter(value.values()), ""))
    return "" if value is None else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Rows aligned under their headers (plain text, for a terminal)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines


def _enums(field: dict[str, Any]) -> str:
    return ", ".join(f"{e['id']}={e['value']}" for e in field["enums"])


def render_amocrm(report: dict[str, Any]) -> str:
    out = ["Pipelines and statuses (AMO_PIPELINE_ID, AMO_STATUS_ID)"]
    out += table(
        ["pipeline_id", "pipeline", "status_id", "status"],
        [
            (p["id"], p["name"] + (" (main)" if p["is_main"] else ""), s["id"], s["name"])
            for p in report["pipelines"]
            for s in p["statuses"]
        ],
    )
    for title, key in (("Lead custom fields", "lead_fields"), ("Contact custom fields", "contact_fields")):
        out += ["", title]
        out += table(
            ["id", "name", "code", "type", "enums"],
            [(f["id"], f["name"], f["code"], f["type"], _enums(f)) for f in report[key]],
        )
    out += ["", "Catalogs and their fields (AMO_CATALOG_ID, AMO_CATALOG_*_FIELD_ID)"]
    out += table(
        ["catalog_id", "catalog", "type", "field_id", "field", "code"],
        [
            (c["id"], c["name"], c["type"], f["id"], f["name"], f["code"])
            for c in report["catalogs"]
            for f in c["fields"] or [{"id": "", "name": "", "code": ""}]
        ],
    )
    out += ["", f"Sample leads (up to {SAMPLE_LEADS})"]
    out += table(
        ["id", "name", "pipeline_id", "status_id", "price", "custom fields"],
        [
            (
                lead["id"],
                lead["name"],
                lead["pipeline_id"],
                lead["status_id"],
                lead["price"],
                json.dumps(lead["custom_fields"], ensure_ascii=False)[:80],
            )
            for lead in report["sample_leads"]
        ],
    )
    return "\n".join(out)


def render_bitrix24(report: dict[str, Any]) -> str:
    out = ["Deal categories and stages (CATEGORY_ID, STAGE_ID)"]
    out += table(
        ["category_id", "category", "stage_id", "stage"],
        [(c["id"], c["name"], s["status_id"], s["name"]) for c in report["categories"] for s in c["stages"]],
    )
    out += ["", "Deal user fields (UF_B24_*)"]
    out += table(
        ["field_name", "type", "multiple", "label"],
        [(f["field_name"], f["type"], "Y" if f["multiple"] else "", f["label"]) for f in report["deal_fields"]],
    )
    return "\n".join(out)


def run(system: str, flow: str | None, as_json: bool) -> str:
    if system == "sheets":
        from integration_sync.ops import inspect_sheets

        return inspect_sheets.run(os.environ, as_json)
    report = amocrm_report(flow) if system == "amocrm" else bitrix24_report(flow)
    if as_json:
        return json.dumps(report, ensure_ascii=False, indent=2)
    return render_amocrm(report) if system == "amocrm" else render_bitrix24(report)

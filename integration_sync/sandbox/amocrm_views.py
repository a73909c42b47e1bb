"""Request handlers of the amoCRM API v4 emulator (contacts, leads, pipelines, custom fields,
catalogs, notes, links, webhooks), mixed into `AmoCrmService`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.responses import Response

from integration_sync.sandbox.amocrm_auth import TokenStore
from integration_sync.sandbox.amocrm_http import (
    COMPLEX_MAX,
    MAX_LIMIT,
    AmoConfig,
    Ctx,
    HalResponse,
    Handler,
    as_list,
    int_values,
    no_content,
    value_range,
)
from integration_sync.sandbox.amocrm_relations import (
    apply_note,
    check_link,
    check_note,
    subscribe,
    unsubscribe,
)
from integration_sync.sandbox.amocrm_render import render_contact, render_element, render_lead, render_note
from integration_sync.sandbox.amocrm_schema import (
    CATALOGS,
    FieldSet,
    Pipeline,
    Status,
)
from integration_sync.sandbox.amocrm_store import CATALOG_IDS, Account, Plan, Record
from integration_sync.sandbox.amocrm_values import ApiError, bad_request, problem, validate_batch
from integration_sync.sandbox.core import JsonDict, JsonResponse


class AmoViews:
    """The API's handlers; each takes a `Ctx` and runs under the service lock."""

    account: Account
    config: AmoConfig
    tokens: TokenStore

    # ------------------------------------------------------------------ helpers
    def _paging(self, ctx: Ctx) -> tuple[int, int]:
        values = []
        for name, default in (("page", 1), ("limit", 50)):
            raw = ctx.params.get(name, default)
            text = str(raw).strip() if not isinstance(raw, dict | list) else ""
            if not text.lstrip("-").isdigit():
                raise bad_request(f"Invalid {name}")
            values.append(int(text))
        page, limit = values
        if limit > MAX_LIMIT or limit < 1:
            if self.config.over_limit != "clamp":
                raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
            limit = min(max(limit, 1), MAX_LIMIT)
        return max(page, 1), limit

    @staticmethod
    def _href(ctx: Ctx, page: int | None = None, limit: int | None = None) -> str:
        url = ctx.request.url
        href = f"{ctx.base}{url.path[len(urlsplit(ctx.base).path) :]}"
        pairs = [(k, v) for k, v in ctx.request.query_params.multi_items() if k not in ("page", "limit")]
        if page is not None:
            pairs = [("page", str(page)), ("limit", str(limit)), *pairs]
        return f"{href}?{urlencode(pairs)}" if pairs else href

    def _page(self, ctx: Ctx, key: str, items: Sequence[Any], render: Callable[[Any], JsonDict]) -> Response:
        page, limit = self._paging(ctx)
        start = (page - 1) * limit
        chunk = items[start : start + limit]
        if not chunk:
            return no_content()
        links: JsonDict = {"self": {"href": self._href(ctx, page, limit)}}
        if start + limit < len(items):
            links["next"] = {"href": self._href(ctx, page + 1, limit)}
        if page > 1:
            links["first"] = {"href": self._href(ctx, 1, limit)}
            links["prev"] = {"href": self._href(ctx, page - 1, limit)}
        return HalResponse({"_page": page, "_links": links, "_embedded": {key: [render(x) for x in chunk]}})

    def _batch(self, ctx: Ctx, cap: int | None = None) -> list[Any]:
        if not isinstance(ctx.body, list) or not ctx.body:
            raise bad_request("Request body must be a non-empty JSON array")
        limit = cap or self.config.batch_max
        if len(ctx.body) > limit:
            raise bad_request(f"Too many entities in request. Max: {limit}")
        return ctx.body

    def _object(self, ctx: Ctx) -> JsonDict:
        if not isinstance(ctx.body, dict):
            raise bad_request("Request body must be a JSON object")
        return ctx.body

    def _filters(self, ctx: Ctx) -> JsonDict:
        raw = ctx.params.get("filter")
        return raw if isinstance(raw, dict) else {}

    def _query(self, ctx: Ctx, filters: Mapping[str, Any]) -> str | None:
        raw = ctx.params.get("query")
        if raw is None and self.config.filter_query:
            raw = filters.get("query")
        return raw if isinstance(raw, str) and raw != "" else None

    def _select(self, ctx: Ctx, records: Iterable[Record]) -> list[Any]:
        """Common filters (id, dates, responsible, query) and ``order`` over ``records``."""
        filters = self._filters(ctx)
        rows = list(records)
        if "id" in filters:
            wanted = int_values(filters["id"], "id")
            rows = [r for r in rows if r.id in wanted]
        for name in ("created_at", "updated_at", "closed_at"):
            if name in filters:
                low, high = value_range(filters[name], name)
                rows = [r for r in rows if self._in_range(getattr(r, name, None), low, high)]
        if "responsible_user_id" in filters:
            users = int_values(filters["responsible_user_id"], "responsible_user_id")
            rows = [r for r in rows if getattr(r, "responsible_user_id", None) in users]
        if "name" in filters:
            names = {str(v) for v in as_list(filters["name"])}
            rows = [r for r in rows if r.name in names]
        needle = self._query(ctx, filters)
        if needle is not None:
            lowered = needle.lower()
            rows = [r for r in rows if lowered in r.blob]
        order = ctx.params.get("order")
        if isinstance(order, dict):
            for name, direction in reversed(list(order.items())):
                if name not in ("id", "created_at", "updated_at") or str(direction).lower() not in ("asc", "desc"):
                    raise bad_request(f"Invalid order: {name}")

                def sort_key(record: Record, attr: str = name) -> tuple[int, int]:
                    return int(getattr(record, attr)), record.id

                rows.sort(key=sort_key, reverse=str(direction).lower() == "desc")
        return rows

    @staticmethod
    def _in_range(value: int | None, low: int | None, high: int | None) -> bool:
        if value is None:
            return False
        return (low is None or value >= low) and (high is None or value <= high)

    def _created(self, ctx: Ctx, key: str, rows: list[JsonDict]) -> Response:
        return HalResponse({"_links": {"self": {"href": self._href(ctx)}}, "_embedded": {key: rows}})

    # ------------------------------------------------------------------ oauth & account
    def h_oauth(self, ctx: Ctx) -> Response:
        body = ctx.body if isinstance(ctx.body, dict) else {}
        return JsonResponse(self.tokens.exchange(body))

    def h_account(self, ctx: Ctx) -> Response:
        return HalResponse(
            {
                "id": self.account.profile.account_id,
                "name": "Sandbox",
                "subdomain": self.account.profile.subdomain,
                "created_at": 1577836800,
                "created_by": self.account.profile.users[0],
                "updated_at": 1577836800,
                "updated_by": self.account.profile.users[0],
                "current_user_id": self.account.profile.users[0],
                "country": "KZ",
                "currency": "KZT",
                "customers_mode": "disabled",
                "is_unsorted_on": True,
                "is_loss_reason_enabled": True,
                "is_helpbot_enabled": False,
                "is_technical_account": False,
                "contact_name_display_order": 1,
                "_links": {"self": {"href": f"{ctx.base}/api/v4/account"}},
            }
        )

    # ------------------------------------------------------------------ contacts
    def _contact(self, ctx: Ctx) -> Callable[[Any], JsonDict]:
        return lambda c: render_contact(self.account, c, ctx.base, self.config.enum_read_key, ctx.with_)

    def h_contacts_list(self, ctx: Ctx) -> Response:
        rows = self._select(ctx, self.account.contacts.values())
        return self._page(ctx, "contacts", rows, self._contact(ctx))

    def h_contact_get(self, ctx: Ctx) -> Response:
        contact = self.account.contacts.get(ctx.int_param("id"))
        return no_content() if contact is None else HalResponse(self._contact(ctx)(contact))

    def h_contacts_add(self, ctx: Ctx) -> Response:
        plans = validate_batch(self._batch(ctx), lambda item, i, errs: self.account.check_contact(item, i, errs, False))
        rows = []
        for plan in plans:
            contact = self.account.apply_contact(plan)
            rows.append(
                {
                    "id": contact.id,
                    "request_id": plan.request_id,
                    "_links": {"self": {"href": f"{ctx.base}/api/v4/contacts/{contact.id}"}},
                }
            )
        self._reindex_contact_leads(p.target for p in plans)
        return self._created(ctx, "contacts", rows)

    def _update_contacts(self, ctx: Ctx, items: list[Any]) -> list[JsonDict]:
        plans = validate_batch(items, lambda item, i, errs: self.account.check_contact(item, i, errs, True))
        rows = []
        for plan in plans:
            contact = self.account.apply_contact(plan)
            rows.append(
                {
                    "id": contact.id,
                    "name": contact.name,
                    "updated_at": contact.updated_at,
                    "request_id": plan.request_id,
                    "_links": {"self": {"href": f"{ctx.base}/api/v4/contacts/{contact.id}"}},
                }
            )
        self._reindex_contact_leads(p.target for p in plans)
        return rows

    def _reindex_contact_leads(self, contact_ids: Iterable[int | None]) -> None:
        if not self.account.lead_query_includes_contacts:
            return
        for contact_id in contact_ids:
            for lead_id in self.account.contact_leads.get(contact_id or 0, {}):
                self.account.reindex_lead(self.account.leads[lead_id])

    def h_contacts_update(self, ctx: Ctx) -> Response:
        return self._created(ctx, "contacts", self._update_contacts(ctx, self._batch(ctx)))

    def h_contact_update_one(self, ctx: Ctx) -> Response:
        item = {**self._object(ctx), "id": ctx.int_param("id")}
        row = self._update_contacts(ctx, [item])[0]
        row.pop("request_id", None)
        return HalResponse(row)

    # ------------------------------------------------------------------ leads
    def _lead(self, ctx: Ctx) -> Callable[[Any], JsonDict]:
        return lambda lead: render_lead(self.account, lead, ctx.base, self.config.enum_read_key, ctx.with_)

    def h_leads_list(self, ctx: Ctx) -> Response:
        filters = self._filters(ctx)
        rows = self._select(ctx, self.account.leads.values())
        if "pipeline_id" in filters:
            pipelines = int_values(filters["pipeline_id"], "pipeline_id")
            rows = [r for r in rows if r.pipeline_id in pipelines]
        if "statuses" in filters:
            pairs = set()
            for cond in as_list(filters["statuses"]):
                if not isinstance(cond, dict) or "status_id" not in cond or "pipeline_id" not in cond:
                    raise bad_request("filter[statuses] needs pipeline_id and status_id")
                pairs.add(
                    (
                        min(int_values(cond["pipeline_id"], "pipeline_id")),
                        min(int_values(cond["status_id"], "status_id")),
                    )
                )
            rows = [r for r in rows if (r.pipeline_id, r.status_id) in pairs]
        return self._page(ctx, "leads", rows, self._lead(ctx))

    def h_lead_get(self, ctx: Ctx) -> Response:
        lead = self.account.leads.get(ctx.int_param("id"))
        return no_content() if lead is None else HalResponse(self._lead(ctx)(lead))

    def h_leads_add(self, ctx: Ctx) -> Response:
        plans = validate_batch(self._batch(ctx), lambda item, i, errs: self.account.check_lead(item, i, errs, False))
        rows = []
        for plan in plans:
            lead = self.account.apply_lead(plan)
            rows.append(
                {
                    "id": lead.id,
                    "request_id": plan.request_id,
                    "_links": {"self": {"href": f"{ctx.base}/api/v4/leads/{lead.id}"}},
                }
            )
        return self._created(ctx, "leads", rows)

    def _update_leads(self, ctx: Ctx, items: list[Any]) -> list[JsonDict]:
        plans: list[Plan] = validate_batch(items, lambda item, i, errs: self.account.check_lead(item, i, errs, True))
        rows = []
        for plan in plans:
            lead = self.account.apply_lead(plan)
            rows.append(
                {
                    "id": lead.id,
                    "updated_at": lead.updated_at,
                    "request_id": plan.request_id,
                    "_links": {"self": {"href": f"{ctx.base}/api/v4/leads/{lead.id}"}},
                }
            )
        return rows

    def h_leads_update(self, ctx: Ctx) -> Response:
        return self._created(ctx, "leads", self._update_leads(ctx, self._batch(ctx)))

    def h_lead_update_one(self, ctx: Ctx) -> Response:
        item = {**self._object(ctx), "id": ctx.int_param("id")}
        row = self._update_leads(ctx, [item])[0]
        row.pop("request_id", None)
        return HalResponse(row)

    def h_leads_complex(self, ctx: Ctx) -> Response:
        items = self._batch(ctx, COMPLEX_MAX)
        plans = validate_batch(items, self.account.check_complex)
        result = [self.account.apply_complex(plan) for plan in plans]
        return HalResponse(result)

    # ------------------------------------------------------------------ pipelines & fields
    def _status(self, ctx: Ctx, pipeline: Pipeline, status: Status, descriptions: bool) -> JsonDict:
        out: JsonDict = {
            "id": status.id,
            "name": status.name,
            "sort": status.sort,
            "is_editable": status.is_editable,
            "pipeline_id": pipeline.id,
            "color": status.color,
            "type": status.type,
            "account_id": self.account.profile.account_id,
            "_links": {"self": {"href": f"{ctx.base}/api/v4/leads/pipelines/{pipeline.id}/statuses/{status.id}"}},
        }
        if descriptions:
            out["descriptions"] = []
        return out

    def _pipeline(self, ctx: Ctx, pipeline: Pipeline) -> JsonDict:
        return {
            "id": pipeline.id,
            "name": pipeline.name,
            "sort": pipeline.sort,
            "is_main": pipeline.is_main,
            "is_unsorted_on": True,
            "is_archive": False,
            "account_id": self.account.profile.account_id,
            "_links": {"self": {"href": f"{ctx.base}/api/v4/leads/pipelines/{pipeline.id}"}},
            "_embedded": {"statuses": [self._status(ctx, pipeline, s, False) for s in pipeline.statuses]},
        }

    def _pipeline_or_404(self, ctx: Ctx) -> Pipeline:
        pipeline = self.account.profile.pipelines_by_id.get(ctx.int_param("id"))
        if pipeline is None:
            raise ApiError(404, problem(404, "Not Found", "Pipeline not found"))
        return pipeline

    def h_pipelines(self, ctx: Ctx) -> Response:
        return HalResponse(
            {
                "_total_items": len(self.account.profile.pipelines),
                "_links": {"self": {"href": self._href(ctx)}},
                "_embedded": {"pipelines": [self._pipeline(ctx, p) for p in self.account.profile.pipelines]},
            }
        )

    def h_pipeline(self, ctx: Ctx) -> Response:
        return HalResponse(self._pipeline(ctx, self._pipeline_or_404(ctx)))

    def h_statuses(self, ctx: Ctx) -> Response:
        pipeline = self._pipeline_or_404(ctx)
        statuses = [self._status(ctx, pipeline, s, True) for s in pipeline.statuses]
        return HalResponse({"_total_items": len(statuses), "_embedded": {"statuses": statuses}})

    def _field(self, ctx: Ctx, fieldset: FieldSet, entity: str) -> Callable[[Any], JsonDict]:
        def render(f: Any) -> JsonDict:
            out = dict(f.describe())
            out["account_id"] = self.account.profile.account_id
            out["_links"] = {"self": {"href": f"{ctx.base}/api/v4/{entity}/custom_fields/{f.id}"}}
            return out

        return render

    def fields_list(self, fieldset: FieldSet, entity: str) -> Handler:
        def handler(ctx: Ctx) -> Response:
            path = entity
            if entity == "catalogs":
                catalog_id = ctx.int_param("id")
                if catalog_id not in CATALOG_IDS:
                    raise ApiError(404, problem(404, "Not Found", "Catalog not found"))
                path = f"catalogs/{catalog_id}"
            response = self._page(ctx, "custom_fields", fieldset.fields, self._field(ctx, fieldset, path))
            if response.status_code == 200:
                body = json.loads(bytes(response.body))
                response = HalResponse({"_total_items": len(fieldset.fields), **body})
            return response

        return handler

    def field_get(self, fieldset: FieldSet) -> Handler:
        def handler(ctx: Ctx) -> Response:
            found = fieldset.by_id.get(ctx.int_param("id"))
            if found is None:
                return no_content()
            return HalResponse(self._field(ctx, fieldset, found.entity_type)(found))

        return handler

    # ------------------------------------------------------------------ catalogs
    def _catalog(self, ctx: Ctx, catalog: Mapping[str, Any]) -> JsonDict:
        return {
            "id": catalog["id"],
            "name": catalog["name"],
            "created_by": self.account.profile.users[0],
            "updated_by": self.account.profile.users[0],
            "created_at": 1577836800,
            "updated_at": 1577836800,
            "sort": catalog["sort"],
            "type": catalog["type"],
            "can_add_elements": catalog["can_add_elements"],
            "can_show_in_cards": catalog["can_show_in_cards"],
            "can_link_multiple": catalog["can_link_multiple"],
            "can_be_deleted": catalog["can_be_deleted"],
            "sdk_widget_code": None,
            "account_id": self.account.profile.account_id,
            "_links": {"self": {"href": f"{ctx.base}/api/v4/catalogs/{catalog['id']}"}},
        }

    def _catalog_id(self, ctx: Ctx) -> int:
        catalog_id = ctx.int_param("id")
        if catalog_id not in CATALOG_IDS:
            raise ApiError(404, problem(404, "Not Found", "Catalog not found"))
        return catalog_id

    def h_catalogs(self, ctx: Ctx) -> Response:
        return self._page(ctx, "catalogs", CATALOGS, lambda c: self._catalog(ctx, c))

    def h_catalog(self, ctx: Ctx) -> Response:
        catalog = next((c for c in CATALOGS if c["id"] == ctx.int_param("id")), None)
        return no_content() if catalog is None else HalResponse(self._catalog(ctx, catalog))

    def _element(self, ctx: Ctx) -> Callable[[Any], JsonDict]:
        return lambda e: render_element(self.account, e, ctx.base, self.config.enum_read_key)

    def h_elements_list(self, ctx: Ctx) -> Response:
        catalog_id = self._catalog_id(ctx)
        rows = self._select(ctx, (e for e in self.account.elements.values() if e.catalog_id == catalog_id))
        return self._page(ctx, "elements", rows, self._element(ctx))

    def h_element_get(self, ctx: Ctx) -> Response:
        catalog_id = self._catalog_id(ctx)
        element = self.account.elements.get(ctx.int_param("element_id"))
        if element is None or element.catalog_id != catalog_id:
            return no_content()
        return HalResponse(self._element(ctx)(element))

    def _save_elements(self, ctx: Ctx, items: list[Any], update: bool) -> Response:
        catalog_id = self._catalog_id(ctx)
        plans = validate_batch(items, lambda it, i, errs: self.account.check_element(catalog_id, it, i, errs, update))
        rows = []
        for i, plan in enumerate(plans):
            row = self._element(ctx)(self.account.apply_element(plan))
            row["request_id"] = plan.request_id if isinstance(items[i].get("request_id"), str) else i
            rows.append(row)
        return self._created(ctx, "elements", rows)

    def h_elements_add(self, ctx: Ctx) -> Response:
        return self._save_elements(ctx, self._batch(ctx), update=False)

    def h_elements_update(self, ctx: Ctx) -> Response:
        return self._save_elements(ctx, self._batch(ctx), update=True)

    def h_element_update_one(self, ctx: Ctx) -> Response:
        response = self._save_elements(ctx, [{**self._object(ctx), "id": ctx.int_param("element_id")}], update=True)
        element: JsonDict = json.loads(bytes(response.body))["_embedded"]["elements"][0]
        element.pop("request_id", None)
        return HalResponse(element)

    # ------------------------------------------------------------------ notes
    def _lead_id(self, ctx: Ctx) -> int | None:
        return ctx.int_param("id") if "id" in ctx.request.path_params else None

    def h_notes_add(self, ctx: Ctx) -> Response:
        lead_id = self._lead_id(ctx)
        plans = validate_batch(self._batch(ctx), lambda it, i, errs: check_note(self.account, it, i, errs, lead_id))
        rows = []
        for plan in plans:
            note = apply_note(self.account, plan)
            href = f"{ctx.base}/api/v4/leads/{note.entity_id}/notes/{note.id}"
            rows.append(
                {
                    "id": note.id,
                    "entity_id": note.entity_id,
                    "request_id": plan.request_id,
                    "_links": {"self": {"href": href}},
                }
            )
        return self._created(ctx, "notes", rows)

    def h_notes_list(self, ctx: Ctx) -> Response:
        lead_id = self._lead_id(ctx)
        filters = self._filters(ctx)
        notes = list(self.account.notes.values())
        if lead_id is not None:
            notes = [n for n in notes if n.entity_id == lead_id]
        if "entity_id" in filters:
            wanted = int_values(filters["entity_id"], "entity_id")
            notes = [n for n in notes if n.entity_id in wanted]
        if "note_type" in filters:
            types = {str(t) for t in as_list(filters["note_type"])}
            notes = [n for n in notes if n.note_type in types]
        if "id" in filters:
            ids = int_values(filters["id"], "id")
            notes = [n for n in notes if n.id in ids]
        return self._page(ctx, "notes", notes, lambda n: render_note(self.account, n, ctx.base))

    def h_note_get(self, ctx: Ctx) -> Response:
        note = self.account.notes.get(ctx.int_param("note_id"))
        if note is None or note.entity_id != ctx.int_param("id"):
            return no_content()
        return HalResponse(render_note(self.account, note, ctx.base))

    # ------------------------------------------------------------------ links
    def h_link(self, ctx: Ctx) -> Response:
        lead_id = self._lead_id(ctx)
        plans = validate_batch(
            self._batch(ctx), lambda it, i, errs: check_link(self.account, it, i, errs, lead_id, unlink=False)
        )
        rows = []
        for plan in plans:
            assert plan.target is not None
            values = plan.values
            rows.append(
                self.account.link(plan.target, values["to_entity_type"], values["to_entity_id"], values["metadata"])
            )
            if values["to_entity_type"] == "contacts":
                self.account.reindex_lead(self.account.leads[plan.target])
        return HalResponse(
            {"_total_items": len(rows), "_links": {"self": {"href": self._href(ctx)}}, "_embedded": {"links": rows}}
        )

    def h_unlink(self, ctx: Ctx) -> Response:
        lead_id = self._lead_id(ctx)
        plans = validate_batch(
            self._batch(ctx), lambda it, i, errs: check_link(self.account, it, i, errs, lead_id, unlink=True)
        )
        for plan in plans:
            assert plan.target is not None
            self.account.unlink(plan.target, plan.values["to_entity_type"], plan.values["to_entity_id"])
            self.account.reindex_lead(self.account.leads[plan.target])
        return no_content()

    def h_links_list(self, ctx: Ctx) -> Response:
        lead_id = self._lead_id(ctx)
        filters = self._filters(ctx)
        if lead_id is not None:
            lead_ids: Iterable[int] = [lead_id]
        elif "entity_id" in filters:
            lead_ids = sorted(int_values(filters["entity_id"], "entity_id"))
        else:
            raise bad_request("filter[entity_id] is required")
        types = {str(t) for t in as_list(filters["to_entity_type"])} if "to_entity_type" in filters else None
        to_ids = int_values(filters["to_entity_id"], "to_entity_id") if "to_entity_id" in filters else None
        rows = []
        for lid in lead_ids:
            for (to_type, to_id), meta in self.account.links.get(lid, {}).items():
                if (types is None or to_type in types) and (to_ids is None or to_id in to_ids):
                    row: JsonDict = {"to_entity_id": to_id, "to_entity_type": to_type, "metadata": dict(meta)}
                    if lead_id is None:
                        row = {"entity_id": lid, "entity_type": "leads", **row}
                    rows.append(row)
        if not rows:
            return no_content()
        return HalResponse(
            {
                "_total_items": len(rows),
                "_links": {"self": {"href": self._href(ctx, 1, 50)}},
                "_embedded": {"links": rows},
            }
        )

    # ------------------------------------------------------------------ webhooks
    def h_webhooks_list(self, ctx: Ctx) -> Response:
        filters = self._filters(ctx)
        hooks = self.account.webhooks
        if "destination" in filters:
            hooks = [h for h in hooks if h["destination"] == filters["destination"]]
        if not hooks:
            return no_content()
        return HalResponse({"_total_items": len(hooks), "_embedded": {"webhooks": [dict(h) for h in hooks]}})

    def h_webhooks_add(self, ctx: Ctx) -> Response:
        return HalResponse(subscribe(self.account, ctx.body))

    def h_webhooks_delete(self, ctx: Ctx) -> Response:
        unsubscribe(self.account, ctx.body)
        return no_content()

"""amoCRM (Kommo) API v4 client: contacts, leads, notes, catalog links, pipelines, custom fields.

Every request goes through the shared HTTP policy with:

- ``Authorization: Bearer`` from ``AmoAuth``; a 401 refreshes once (single-flight across processes)
  and the request is sent once more, then ``AuthError``;
- one rate budget for the whole integration: a ``RateLimiter`` (6.5 req/s, burst 1 by default)
  whose state file (``rate_state_path``) is shared by every process, so flows pushing at once
  together stay under amoCRM's 7 req/s; the limiter also holds each request in amoCRM's one-second
  window until a second after its answer, so a request that arrives late never makes eight;
- 429 (an HTML page, no Retry-After): backoff, the shared limiter is penalized, then retried;
- 403 with the HTML block page: ``BlockedError``, and a ``BlockFlag`` file next to the rate state
  (``block_state_path``) stops every process until an operator clears it or ``block_cooldown_s``
  passes;
- 204 (empty list, no match, unknown id) → empty / None; HAL paging by ``_links.next``, ≤ 250 per
  page; a 400 ``validation-errors`` answer → ``BatchItemsError`` with errors per request id.

Returned entities are the pydantic models of ``amocrm_models.py``; custom-field values are built and
read by ``amocrm_fields.py``. Both are re-exported here, so callers keep one import path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from integration_sync.connectors.amocrm_auth import (
    AmoAuth,
    account_root,
    classify_amocrm,
    parse_amocrm_error,
)
from integration_sync.connectors.amocrm_fields import (
    PhoneKey,
    clear_field,
    enum_field_value,
    field_value,
    normalize_email,
    phone_query_forms,
    sanitize_for_write,
    to_write_form,
)
from integration_sync.connectors.amocrm_models import (
    LOST_STATUS_ID,
    WON_STATUS_ID,
    AmoModel,
    Catalog,
    CatalogElement,
    Company,
    ComplexLeadResult,
    Contact,
    Created,
    CustomField,
    CustomFieldValues,
    FieldEnum,
    FieldValue,
    Lead,
    Link,
    LinkMetadata,
    Note,
    NoteParams,
    Pipeline,
    Status,
    Webhook,
    read_enum_ids,
    read_field_values,
)
from integration_sync.connectors.errors import ApiError, BatchItemsError
from integration_sync.connectors.http import ApiClient, HttpPolicy, ServiceClient
from integration_sync.connectors.ratelimit import BlockFlag, BlockInfo, RateLimiter

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=AmoModel)

SERVICE = "amocrm"
API_PREFIX = "api/v4/"
MAX_PAGE_SIZE = 250
BATCH_LIMIT = 50  # leads/complex is capped at 50; the SDK advises 50 for plain batches too
LIMIT_PER_S = 7  # amoCRM: at most 7 requests in any second per integration
DEFAULT_RATE_PER_S = 6.5  # amoCRM allows 7/s per integration: stay just under
DEFAULT_BLOCK_COOLDOWN_S = 3600.0

DEFAULT_POLICY = HttpPolicy(
    timeout=30.0,
    connect_timeout=10.0,
    max_attempts=5,
    backoff_base=1.0,
    backoff_max=30.0,
    max_retry_after=120.0,
)


# -- models -------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _next_page(data: Mapping[str, Any], current: int) -> int | None:
    links = data.get("_links")
    nxt = links.get("next") if isinstance(links, Mapping) else None
    href = nxt.get("href") if isinstance(nxt, Mapping) else None
    if not isinstance(href, str) or not href:
        return None
    pages = parse_qs(urlsplit(href).query).get("page")
    if pages and pages[0].isdigit() and int(pages[0]) > current:
        return int(pages[0])
    return current + 1


class AmoCrmClient(ServiceClient):
    """One amoCRM account (``base_url`` = ``https://sub.amocrm.ru``, with or without ``/api/v4``)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AmoAuth,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        burst: int = 1,
        rate_state_path: str | Path | None = None,
        block_state_path: str | Path | None = None,
        block_cooldown_s: float = DEFAULT_BLOCK_COOLDOWN_S,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.root = account_root(base_url)
        self.auth = auth
        self.limiter = limiter or RateLimiter(
            rate_per_s, burst, state_path=rate_state_path, name=SERVICE, window=(LIMIT_PER_S, 1.0)
        )
        if block_state_path is None and rate_state_path is not None:
            block_state_path = Path(rate_state_path).with_suffix(".blocked.json")
        self.block = BlockFlag(name=SERVICE, state_path=block_state_path, cooldown_s=block_cooldown_s)
        self._api = ApiClient(
            SERVICE,
            f"{self.root}/{API_PREFIX}",
            policy=policy or DEFAULT_POLICY,
            limiter=self.limiter,
            secrets=auth.secrets,
            headers={"Accept": "application/hal+json, application/json"},
            classify=classify_amocrm,
            parse_error=parse_amocrm_error,
            auth=auth,
            block=self.block,
        )
        auth.attach(limiter=self.limiter, block=self.block, secrets_sink=self._api.add_secrets)

    # -- counters and the block switch -----------------------------------------------------------

    @property
    def requests_used(self) -> int:
        """Requests sent by this client (retries included) plus the token calls of its auth."""
        return self._api.stats.requests + self.auth.requests_used

    def blocked(self) -> BlockInfo | None:
        """The recorded account block, if it still holds."""
        return self.block.active()

    def clear_block(self) -> bool:
        """Operator action: let every process call amoCRM again."""
        return self.block.clear()

    # -- transport -------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None) -> Any:
        """GET a JSON body; None for 204 / an empty body."""
        response = self._api.request("GET", path, idempotent=True, params=params, endpoint=_label(path))
        if response.status_code == 204 or not response.content.strip():
            return None
        return self._api.parse_json(response)

    def _get_one(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET one entity: None for 204 (amoCRM's answer for an unknown id) and for 404."""
        try:
            return self._get(path, params)
        except ApiError as exc:
            if type(exc) is not ApiError or exc.status != 404:
                raise
        return None

    def _send(self, method: str, path: str, body: Any, *, idempotent: bool) -> Any:
        response = self._api.request(method, path, idempotent=idempotent, json=body, endpoint=_label(path))
        if response.status_code == 204 or not response.content.strip():
            return None
        return self._api.parse_json(response)

    def _iter_pages(
        self, path: str, key: str, params: Sequence[tuple[str, Any]] = (), *, limit: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every item of a HAL list, page by page until a page has no ``_links.next``."""
        page = 1
        size = max(1, min(int(limit), MAX_PAGE_SIZE))
        while True:
            data = self._get(path, [*params, ("limit", size), ("page", page)])
            if not isinstance(data, Mapping):
                return
            embedded = data.get("_embedded")
            items = embedded.get(key) if isinstance(embedded, Mapping) else None
            if not isinstance(items, list) or not items:
                return
            yield from (item for item in items if isinstance(item, dict))
            following = _next_page(data, page)
            if following is None:
                return
            page = following

    def _parse(self, model: type[ModelT], items: Iterable[Any]) -> list[ModelT]:
        return [model.model_validate(item) for item in items if isinstance(item, dict)]

    def _batch(
        self,
        method: str,
        path: str,
        items: Sequence[Any],
        *,
        key: str | None,
        model: type[ModelT],
        idempotent: bool,
    ) -> list[ModelT]:
        """Send items ≤ 50 per request; results aligned with ``items`` (by request_id, else order).

        A 400 with validation errors raises ``BatchItemsError`` whose ``positions`` index into
        ``items`` and whose ``done`` holds the results of the requests already applied."""
        results: list[ModelT] = []
        for offset, chunk in _chunks(list(items), BATCH_LIMIT):
            body = [sanitize_for_write(item) for item in chunk]
            refused: BatchItemsError | None = None
            data: Any = None
            try:
                data = self._send(method, path, body, idempotent=idempotent)
            except BatchItemsError as exc:
                refused = exc
            if refused is not None:
                raise _rekey(refused, body, offset, list(results))
            answer: Any = None
            if key is None:
                answer = data
            else:
                embedded = data.get("_embedded") if isinstance(data, Mapping) else None
                answer = embedded.get(key) if isinstance(embedded, Mapping) else None
            if not isinstance(answer, list):
                raise ApiError(SERVICE, f"{method} {path}: answer has no {key or 'array'}")
            results.extend(_align(body, self._parse(model, answer), path))
        return results

    # -- contacts --------------------------------------------------------------------------------

    def iter_contacts(
        self,
        *,
        query: str | None = None,
        ids: Sequence[int] | None = None,
        with_leads: bool = False,
        updated_from: int | None = None,
        order_by_updated: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Iterator[Contact]:
        params: list[tuple[str, Any]] = []
        if query:
            params.append(("query", query))
        params.extend(("filter[id][]", int(i)) for i in ids or ())
        if with_leads:
            params.append(("with", "leads"))
        if updated_from is not None:
            params.append(("filter[updated_at][from]", int(updated_from)))
        if order_by_updated:
            params.append(("order[updated_at]", order_by_updated))
        wanted = {int(i) for i in ids or ()}
        for item in self._iter_pages("contacts", "contacts", params, limit=limit):
            contact = Contact.model_validate(item)
            if wanted and contact.id not in wanted:
                continue
            if updated_from is not None and contact.updated_at is not None and contact.updated_at < updated_from:
                continue  # the filter may be ignored: check here too
            yield contact

    def iter_contacts_updated_since(self, since: int) -> Iterator[Contact]:
        """Contacts updated at or after ``since`` (Unix seconds), newest first."""
        yield from self.iter_contacts(updated_from=since, order_by_updated="desc")

    def find_contacts(self, query: str, *, with_leads: bool = False) -> list[Contact]:
        """Contacts matching amoCRM's fuzzy ``query`` (ANY filled field): unverified hits."""
        if not str(query).strip():
            return []
        return list(self.iter_contacts(query=str(query).strip(), with_leads=with_leads))

    def find_contacts_by_phone(
        self, phone: str, phone_key: PhoneKey, *, with_leads: bool = False, first_match: bool = False
    ) -> list[Contact]:
        """Contacts whose PHONE field holds this number (E.164), compared through the caller's
        ``phone_key`` (8/7/+7 alike). Searches each query form amoCRM needs and returns only verified
        hits, by id; with ``first_match`` it stops at the first form that finds one (fewer requests)."""
        wanted = phone_key(phone)
        if wanted is None:
            return []
        found: dict[int, Contact] = {}
        for form in phone_query_forms(wanted):
            for contact in self.find_contacts(form, with_leads=with_leads):
                if contact.id not in found and any(phone_key(p) == wanted for p in contact.phones()):
                    found[contact.id] = contact
            if found and first_match:
                break
        return list(found.values())

    def find_contacts_by_email(self, email: str, *, with_leads: bool = False) -> list[Contact]:
        """Contacts whose EMAIL field holds this address (case-insensitive), verified."""
        wanted = normalize_email(email)
        if not wanted:
            return []
        return [
            c
            for c in self.find_contacts(wanted, with_leads=with_leads)
            if any(normalize_email(e) == wanted for e in c.emails())
        ]

    def find_contacts_by_field(self, field: int | str, value: Any, *, with_leads: bool = False) -> list[Contact]:
        """Contacts whose custom field (id or code) holds ``value`` exactly (trimmed, case-
        insensitive) — e.g. a Telegram id — verified, not just a fuzzy ``query`` hit."""
        wanted = str(value).strip().casefold()
        if not wanted:
            return []
        return [
            c
            for c in self.find_contacts(str(value).strip(), with_leads=with_leads)
            if any(str(v).strip().casefold() == wanted for v in c.field_values(field) if v is not None)
        ]

    def get_contacts(self, ids: Iterable[int], *, with_leads: bool = False) -> list[Contact]:
        """Contacts by id (``filter[id][]``, 50 ids per request); unknown or deleted ids are absent."""
        unique = sorted({int(i) for i in ids})
        found: list[Contact] = []
        for _, chunk in _chunks(unique, BATCH_LIMIT):
            found.extend(self.iter_contacts(ids=chunk, with_leads=with_leads))
        return found

    def get_contact(self, contact_id: int, *, with_leads: bool = False) -> Contact | None:
        data = self._get_one(f"contacts/{int(contact_id)}", {"with": "leads"} if with_leads else None)
        return Contact.model_validate(data) if isinstance(data, dict) else None

    def create_contacts(self, contacts: Sequence[Mapping[str, Any]]) -> list[Created]:
        """``POST /contacts`` 50 per request; one ``Created`` per input, in input order."""
        return self._batch("POST", "contacts", contacts, key="contacts", model=Created, idempotent=False)

    def update_contacts(self, contacts: Sequence[Mapping[str, Any]]) -> list[Created]:
        """``PATCH /contacts`` 50 per request (each item has ``id``; a multi-value field is replaced)."""
        _require_ids(contacts)
        return self._batch("PATCH", "contacts", contacts, key="contacts", model=Created, idempotent=True)

    # -- leads -----------------------------------------------------------------------------------

    def get_leads(self, ids: Iterable[int], *, with_contacts: bool = True) -> list[Lead]:
        """Leads by id (``filter[id][]``, 50 ids per request); unknown or deleted ids are absent."""
        unique = sorted({int(i) for i in ids})
        found: list[Lead] = []
        for _, chunk in _chunks(unique, BATCH_LIMIT):
            found.extend(self.iter_leads(ids=chunk, with_contacts=with_contacts))
        return found

    def get_lead(self, lead_id: int, *, with_contacts: bool = True) -> Lead | None:
        data = self._get_one(f"leads/{int(lead_id)}", {"with": "contacts"} if with_contacts else None)
        return Lead.model_validate(data) if isinstance(data, dict) else None

    def iter_leads(
        self,
        *,
        query: str | None = None,
        ids: Sequence[int] | None = None,
        with_contacts: bool = False,
        pipeline_ids: Sequence[int] | None = None,
        statuses: Sequence[tuple[int, int]] | None = None,
        updated_from: int | None = None,
        updated_to: int | None = None,
        order_by_updated: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        created_from: int | None = None,
        created_to: int | None = None,
    ) -> Iterator[Lead]:
        """Leads page by page. ``statuses`` are (pipeline_id, status_id) pairs. The filters are sent
        and also applied here (they are "alpha"/paid on some accounts and may be ignored)."""
        params: list[tuple[str, Any]] = []
        if query:
            params.append(("query", query))
        params.extend(("filter[id][]", int(i)) for i in ids or ())
        if with_contacts:
            params.append(("with", "contacts"))
        for pipeline_id in pipeline_ids or ():
            params.append(("filter[pipeline_id][]", int(pipeline_id)))
        for index, (pipeline_id, status_id) in enumerate(statuses or ()):
            params.append((f"filter[statuses][{index}][pipeline_id]", int(pipeline_id)))
            params.append((f"filter[statuses][{index}][status_id]", int(status_id)))
        if updated_from is not None:
            params.append(("filter[updated_at][from]", int(updated_from)))
        if updated_to is not None:
            params.append(("filter[updated_at][to]", int(updated_to)))
        if created_from is not None:
            params.append(("filter[created_at][from]", int(created_from)))
        if created_to is not None:
            params.append(("filter[created_at][to]", int(created_to)))
        if order_by_updated:
            params.append(("order[updated_at]", order_by_updated))
        wanted_ids = {int(i) for i in ids or ()}
        wanted_pipelines = {int(p) for p in pipeline_ids or ()}
        wanted_statuses = {(int(p), int(s)) for p, s in statuses or ()}
        for item in self._iter_pages("leads", "leads", params, limit=limit):
            lead = Lead.model_validate(item)
            if wanted_ids and lead.id not in wanted_ids:
                continue
            if wanted_pipelines and lead.pipeline_id not in wanted_pipelines:
                continue
            if wanted_statuses and (lead.pipeline_id, lead.status_id) not in wanted_statuses:
                continue
            created = lead.created_at
            if created is not None and (
                (created_from is not None and created < created_from)
                or (created_to is not None and created > created_to)
            ):
                continue
            updated = lead.updated_at
            if updated is not None and (
                (updated_from is not None and updated < updated_from)
                or (updated_to is not None and updated > updated_to)
            ):
                continue
            yield lead

    def find_leads(
        self,
        query: str | None = None,
        *,
        with_contacts: bool = False,
        pipeline_ids: Sequence[int] | None = None,
        statuses: Sequence[tuple[int, int]] | None = None,
        updated_from: int | None = None,
        updated_to: int | None = None,
    ) -> list[Lead]:
        """All leads matching (``query`` is amoCRM's fuzzy search: verify the hits)."""
        return list(
            self.iter_leads(
                query=query,
                with_contacts=with_contacts,
                pipeline_ids=pipeline_ids,
                statuses=statuses,
                updated_from=updated_from,
                updated_to=updated_to,
            )
        )

    def get_companies(self, ids: Iterable[int]) -> list[Company]:
        """Companies by id (``filter[id][]``, 50 ids per request); unknown or deleted ids are absent."""
        unique = sorted({int(i) for i in ids})
        found: list[Company] = []
        for _, chunk in _chunks(unique, BATCH_LIMIT):
            params = [("filter[id][]", int(i)) for i in chunk]
            items = self._iter_pages("companies", "companies", params, limit=MAX_PAGE_SIZE)
            found.extend(c for c in self._parse(Company, items) if c.id in chunk)
        return found

    def create_leads(self, leads: Sequence[Mapping[str, Any]]) -> list[Created]:
        """``POST /leads`` 50 per request (``_embedded.contacts: [{id}]`` links contacts).
        Plain POSTs are not deduplicated by amoCRM: look up before creating."""
        return self._batch("POST", "leads", leads, key="leads", model=Created, idempotent=False)

    def update_leads(self, leads: Sequence[Mapping[str, Any]]) -> list[Created]:
        """``PATCH /leads`` 50 per request; a move to 142/143 must carry ``pipeline_id``."""
        _require_ids(leads)
        for lead in leads:
            if lead.get("status_id") in (WON_STATUS_ID, LOST_STATUS_ID) and not lead.get("pipeline_id"):
                raise ValueError(f"lead {lead.get('id')}: moving to status {lead.get('status_id')} needs pipeline_id")
        return self._batch("PATCH", "leads", leads, key="leads", model=Created, idempotent=True)

    def create_leads_complex(self, leads: Sequence[Mapping[str, Any]]) -> list[ComplexLeadResult]:
        """``POST /leads/complex`` (≤ 50 per request, ≤ 1 contact + 1 company each): one result
        per input, matched by ``request_id`` (``merged`` when amoCRM's duplicate control merged it)."""
        return self._batch("POST", "leads/complex", leads, key=None, model=ComplexLeadResult, idempotent=False)

    # -- notes and links -------------------------------------------------------------------------

    def add_notes(self, notes: Sequence[tuple[int, str]]) -> list[Created]:
        """Common notes on leads through the bulk ``POST /leads/notes``: (lead_id, text) pairs."""
        body = [{"entity_id": int(lead_id), "note_type": "common", "params": {"text": text}} for lead_id, text in notes]
        return self._batch("POST", "leads/notes", body, key="notes", model=Created, idempotent=False)

    def link_catalog_elements(self, links: Sequence[tuple[int, int, float | int, int]]) -> list[Link]:
        """Attach catalog elements to leads through the bulk ``POST /leads/link``:
        (lead_id, element_id, quantity, catalog_id) tuples."""
        body = [
            {
                "entity_id": int(lead_id),
                "to_entity_id": int(element_id),
                "to_entity_type": "catalog_elements",
                "metadata": {"quantity": quantity, "catalog_id": int(catalog_id)},
            }
            for lead_id, element_id, quantity, catalog_id in links
        ]
        results: list[Link] = []
        for offset, chunk in _chunks(body, BATCH_LIMIT):
            refused: BatchItemsError | None = None
            data: Any = None
            try:
                data = self._send("POST", "leads/link", list(chunk), idempotent=False)
            except BatchItemsError as exc:
                refused = exc
            if refused is not None:
                raise _rekey(refused, list(chunk), offset, list(results))
            embedded = data.get("_embedded") if isinstance(data, Mapping) else None
            answer = embedded.get("links") if isinstance(embedded, Mapping) else None
            results.extend(self._parse(Link, answer if isinstance(answer, list) else []))
        return results

    def list_lead_links(self, lead_id: int) -> list[Link]:
        return self._parse(Link, self._iter_pages(f"leads/{int(lead_id)}/links", "links"))

    def list_lead_notes(self, lead_id: int) -> list[Note]:
        return self._parse(Note, self._iter_pages(f"leads/{int(lead_id)}/notes", "notes"))

    def list_notes(self, lead_ids: Iterable[int], *, note_type: str | None = None) -> list[Note]:
        """Notes of many leads through ``GET /leads/notes?filter[entity_id][]=…`` (50 leads per
        request), optionally of one ``note_type``."""
        wanted = sorted({int(i) for i in lead_ids})
        notes: list[Note] = []
        for _, chunk in _chunks(wanted, BATCH_LIMIT):
            params: list[tuple[str, Any]] = [("filter[entity_id][]", lead_id) for lead_id in chunk]
            if note_type:
                params.append(("filter[note_type]", note_type))
            notes.extend(self._parse(Note, self._iter_pages("leads/notes", "notes", params)))
        return [n for n in notes if n.entity_id in set(wanted)]  # the filter may be ignored: check here too

    # -- account structure -----------------------------------------------------------------------

    def list_pipelines(self) -> list[Pipeline]:
        """Pipelines with their statuses (each has an unsorted status, 142 won and 143 lost)."""
        return self._parse(Pipeline, self._iter_pages("leads/pipelines", "pipelines"))

    def list_custom_fields(self, entity: str) -> list[CustomField]:
        """Custom fields of ``leads``, ``contacts``, ``companies`` or ``catalogs/{id}``, with enums."""
        path = f"{entity.strip('/')}/custom_fields"
        return self._parse(CustomField, self._iter_pages(path, "custom_fields"))

    # -- webhooks (account admin only) -----------------------------------------------------------

    def list_webhooks(self, destination: str | None = None) -> list[Webhook]:
        """``GET /webhooks``, with ``filter[destination]`` (the exact address) when given; 204 → []."""
        params = [("filter[destination]", destination)] if destination else []
        data = self._get("webhooks", params)
        embedded = data.get("_embedded") if isinstance(data, Mapping) else None
        items = embedded.get("webhooks") if isinstance(embedded, Mapping) else None
        hooks = self._parse(Webhook, items if isinstance(items, list) else [])
        return [h for h in hooks if destination is None or h.destination == destination]

    def subscribe_webhook(self, destination: str, settings: Sequence[str]) -> Webhook:
        """``POST /webhooks``: one hook per address (a retried POST makes no second one)."""
        body = {"destination": destination, "settings": list(settings)}
        data = self._send("POST", "webhooks", body, idempotent=True)
        if not isinstance(data, Mapping):
            raise ApiError(SERVICE, "POST webhooks: answer has no webhook")
        return Webhook.model_validate(data)

    def unsubscribe_webhook(self, destination: str) -> None:
        """``DELETE /webhooks`` ``{destination}`` (204; unknown addresses are no error)."""
        self._send("DELETE", "webhooks", {"destination": destination}, idempotent=True)

    # -- catalogs --------------------------------------------------------------------------------

    def list_catalogs(self) -> list[Catalog]:
        return self._parse(Catalog, self._iter_pages("catalogs", "catalogs"))

    def iter_catalog_elements(self, catalog_id: int, *, query: str | None = None) -> Iterator[CatalogElement]:
        params = [("query", query)] if query else []
        for item in self._iter_pages(f"catalogs/{int(catalog_id)}/elements", "elements", params):
            yield CatalogElement.model_validate(item)

    def find_catalog_elements(self, catalog_id: int, query: str) -> list[CatalogElement]:
        """Elements matching the fuzzy ``query`` (verify the hits, e.g. by SKU)."""
        if not str(query).strip():
            return []
        return list(self.iter_catalog_elements(catalog_id, query=str(query).strip()))

    def create_catalog_elements(self, catalog_id: int, elements: Sequence[Mapping[str, Any]]) -> list[CatalogElement]:
        """``POST /catalogs/{id}/elements`` 50 per request; one element per input, in order."""
        path = f"catalogs/{int(catalog_id)}/elements"
        return self._batch("POST", path, elements, key="elements", model=CatalogElement, idempotent=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._api.close()
        self.auth.close()

    def __enter__(self) -> AmoCrmClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- batch bookkeeping --------------------------------------------------------------------------


def _label(path: str) -> str:
    """Stats label: ids replaced by ``{id}`` so endpoints aggregate."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path.split("?", 1)[0].strip("/"))


def _require_ids(items: Sequence[Mapping[str, Any]]) -> None:
    for index, item in enumerate(items):
        if not item.get("id"):
            raise ValueError(f"item {index} has no id: updates need one")


def _expected_keys(body: Sequence[Any]) -> list[str]:
    """The request id amoCRM echoes for each item: its own ``request_id``, else its ordinal."""
    keys = []
    for index, item in enumerate(body):
        own = item.get("request_id") if isinstance(item, Mapping) else None
        keys.append(str(own) if own not in (None, "") else str(index))
    return keys


def _align(body: Sequence[Any], answer: Sequence[AmoModel], path: str) -> list[Any]:
    keys = _expected_keys(body)
    by_key: dict[str, Any] = {}
    for result in answer:
        for key in result.echoed_request_ids():
            by_key.setdefault(key, result)
    if len(set(keys)) == len(keys) and all(key in by_key for key in keys):
        return [by_key[key] for key in keys]
    if len(answer) == len(body):
        return list(answer)  # no usable request ids: amoCRM answers in request order
    raise ApiError(SERVICE, f"{path}: {len(answer)} results for {len(body)} items, not matched by request_id")


def _rekey(error: BatchItemsError, body: Sequence[Any], offset: int, done: list[Any]) -> BatchItemsError:
    """Map the answer's request ids to the caller's items: their own request_id, else the index."""
    keys = _expected_keys(body)
    item_errors: dict[str, list[str]] = {}
    positions: dict[str, int] = {}
    for key, problems in error.item_errors.items():
        if key in keys:
            index: int | None = keys.index(key)
        elif key.isdigit() and int(key) < len(body):
            index = int(key)
        else:
            index = None
        name = keys[index] if index is not None else key
        item_errors.setdefault(name, []).extend(problems)
        if index is not None:
            positions[name] = offset + index
    return BatchItemsError(
        error.service,
        error.message,
        status=error.status,
        code=error.code,
        request=error.request,
        item_errors=item_errors,
        positions=positions,
        done=done,
    )


__all__ = [
    "LOST_STATUS_ID",
    "MAX_PAGE_SIZE",
    "WON_STATUS_ID",
    "AmoCrmClient",
    "AmoModel",
    "Catalog",
    "CatalogElement",
    "ComplexLeadResult",
    "Contact",
    "Created",
    "CustomField",
    "CustomFieldValues",
    "FieldEnum",
    "FieldValue",
    "Lead",
    "Link",
    "LinkMetadata",
    "Note",
    "NoteParams",
    "PhoneKey",
    "Pipeline",
    "Status",
    "Webhook",
    "clear_field",
    "enum_field_value",
    "field_value",
    "phone_query_forms",
    "read_enum_ids",
    "read_field_values",
    "sanitize_for_write",
    "to_write_form",
]

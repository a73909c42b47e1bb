"""Reading the seller's leads from amoCRM in bulk: leads by id or by creation window, then their main
contacts and companies by id (`with=contacts` gives ids only), as `LeadSnapshot`s. No Dagster.

Requests: the account map (pipelines + lead fields: 2), leads (50 ids or 250 listed per request),
contacts and companies (50 ids per request each).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_models import Lead
from integration_sync.defs.amocrm_sheets.mapping import AccountMap, LeadSnapshot, account_map, lead_snapshot
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings


def load_account_map(client: AmoCrmClient, settings: SheetsSettings) -> AccountMap:
    return account_map(client.list_pipelines(), client.list_custom_fields("leads"), settings)


@dataclass
class ReadResult:
    """Leads read: snapshots of the served ones, and the ids skipped with why."""

    snapshots: list[LeadSnapshot] = field(default_factory=list)
    too_old: list[int] = field(default_factory=list)
    other_pipeline: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)


def snapshots_of(
    client: AmoCrmClient,
    leads: Sequence[Lead],
    account: AccountMap,
    settings: SheetsSettings,
    *,
    asked: Iterable[int] = (),
) -> ReadResult:
    """Skip as the seed does (last updated before `LEADS_CREATED_AFTER`; a pipeline not served), then
    read the contacts and companies of the rest in bulk."""
    result = ReadResult()
    found = {lead.id for lead in leads}
    result.not_found = sorted(set(asked) - found)
    served: list[Lead] = []
    for lead in leads:
        if lead.is_deleted:
            result.not_found.append(lead.id)
        elif settings.leads_created_after and int(lead.updated_at or 0) < settings.leads_created_after:
            result.too_old.append(lead.id)
        elif account.pipeline(lead.pipeline_id) is None:
            result.other_pipeline.append(lead.id)
        else:
            served.append(lead)
    contact_ids = {cid for lead in served if (cid := lead.main_contact_id) is not None}
    company_ids = {lead.embedded.companies[0].id for lead in served if lead.embedded.companies}
    contacts = {c.id: c for c in client.get_contacts(contact_ids)} if contact_ids else {}
    companies = {c.id: c for c in client.get_companies(company_ids)} if company_ids else {}
    zone = ZoneInfo(settings.timezone)
    for lead in served:
        pipeline = account.pipeline(lead.pipeline_id)
        assert pipeline is not None
        contact = contacts.get(lead.main_contact_id or 0)
        company = companies.get(lead.embedded.companies[0].id) if lead.embedded.companies else None
        result.snapshots.append(lead_snapshot(lead, pipeline, contact, company, account, zone))
    return result


def read_by_ids(client: AmoCrmClient, ids: Iterable[int], account: AccountMap, settings: SheetsSettings) -> ReadResult:
    """The leads of these ids, re-read (a hook's content is never trusted: it may be stale or re-sent)."""
    wanted = sorted({int(i) for i in ids})
    leads = client.get_leads(wanted, with_contacts=True) if wanted else []
    return snapshots_of(client, leads, account, settings, asked=wanted)


def read_created(
    client: AmoCrmClient, start: int, end: int, account: AccountMap, settings: SheetsSettings
) -> ReadResult:
    """Every lead of the served pipelines created in [start, end) (Unix seconds): a backfill's day."""
    pipelines = sorted(account.pipelines)
    leads = (
        list(client.iter_leads(with_contacts=True, pipeline_ids=pipelines, created_from=start, created_to=end - 1))
        if pipelines
        else []
    )
    return snapshots_of(client, leads, account, settings)


def updated_since(client: AmoCrmClient, since: int, account: AccountMap) -> list[Lead]:
    """Leads of the served pipelines updated at or after `since`: the polling fallback's one request
    (more only when more than a page changed)."""
    pipelines = sorted(account.pipelines)
    if not pipelines:
        return []
    return list(client.iter_leads(pipeline_ids=pipelines, updated_from=since, order_by_updated="asc"))

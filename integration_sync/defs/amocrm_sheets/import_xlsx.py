"""`integration-sync amocrm import-xlsx FILE`: the seed's import_xlsx.py, leads from an Excel file.

Rows are read and checked (`import_xlsx_rows`), then pushed through the sync engine (flow
`amocrm_sheets`, entity `xlsx_import`, mode `create_only`) keyed by each row's import key: the
engine's ledger makes a re-import free, its in-flight marks survive a crash, and every create is
first matched against the pipeline's leads by the key the lead carries (`AmoLeadIndex`), so a lost
warehouse never doubles a lead. Contacts come from the account's shared phone index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.errors import AuthError, ConfigError, IntegrationError
from integration_sync.defs.amocrm_sheets.import_xlsx_rows import (
    COUNTRY,
    KEY_KIND,
    Account,
    BadRow,
    FileProblem,
    ImportKeyRule,
    Row,
    choose_pipeline,
    fields_by_name,
    find_columns,
    lead_of,
    parse_row,
)
from integration_sync.defs.amocrm_sheets.layout import ORDER_NO
from integration_sync.defs.amocrm_sheets.settings import FLOW, SheetsSettings
from integration_sync.lib.registry import CommandGroups
from integration_sync.lib.settings_files import load_dotenv
from integration_sync.sync.engine import Change, Desired, Outcome, SyncEngine, SyncReport
from integration_sync.sync.plan import planned
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_contacts import AmoContactIndex, ContactKeyRule, phone_key
from integration_sync.targets.amocrm_leads import AmoLeadIndex, LeadRef

ENTITY = "xlsx_import"
MAX_BATCH = 50  # amoCRM's limit per create request


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _custom_fields(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field_id": int(field_id), "values": [value]} for field_id, value in values.items()]


class XlsxLeadsDestination:
    """Creates the rows' leads in amoCRM, `batch_size` per request, `delay_s` between batches."""

    name = "amocrm"
    primary_entity = "lead"

    def __init__(
        self,
        client: AmoCrmClient,
        warehouse: Warehouse,
        contacts: AmoContactIndex,
        *,
        order_no_field: int | None,
        batch_size: int,
        delay_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.warehouse = warehouse
        self.contacts = contacts
        self.order_no_field = order_no_field
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.delay_s = delay_s
        self.sleep = sleep
        self.leads: dict[int, AmoLeadIndex] = {}
        self._pushed = False

    def requests_used(self) -> int:
        return int(self.client.requests_used)

    def lead_index(self, pipeline_id: int) -> AmoLeadIndex:
        if pipeline_id not in self.leads:
            rule = ImportKeyRule(kind=KEY_KIND, pipeline_id=pipeline_id, field_id=self.order_no_field)
            self.leads[pipeline_id] = AmoLeadIndex.load(self.warehouse, self.client.root, rule)
        return self.leads[pipeline_id]

    def save(self) -> None:
        for index in self.leads.values():
            index.save()
        self.contacts.save()

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """Leads of the changes' pipelines that carry their import key (made by an earlier import,
        or holding the row's order number)."""
        again = any(c.in_flight for c in changes)
        pipelines = sorted({int(c.payload["lead"]["pipeline_id"]) for c in changes})
        for pipeline_id in pipelines:
            self.lead_index(pipeline_id).refresh(self.client, again=again)
        found: dict[str, dict[str, str]] = {}
        for change in changes:
            for index in self.leads.values():
                ref = index.get(change.key)
                if ref is not None:
                    found[change.key] = {"lead": ref.lead_id, **({"contact": ref.contact_id} if ref.contact_id else {})}
                    break
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        if self._pushed and self.delay_s > 0:
            self.sleep(self.delay_s)  # IMPORT_DELAY_SEC between batches
        self._pushed = True
        done = [c for c in changes if "lead" in c.target_ids]  # create_only: never written again
        outcomes = [Outcome(c.key, "succeeded", "link", dict(c.target_ids)) for c in done]
        creates = [c for c in changes if "lead" not in c.target_ids]
        if creates:
            self.contacts.refresh(self.client)
            outcomes += self._create(creates)
        return outcomes

    def _create(self, creates: Sequence[Change]) -> list[Outcome]:
        ids: dict[str, dict[str, str]] = {}
        new_contact: dict[str, Change] = {}  # one new contact per phone, made once
        plain: list[Change] = []
        for change in creates:
            phone = change.payload["contact"]["phone"]
            if phone and (phone in new_contact or self._contact_of(phone)):
                plain.append(change)
            elif phone:
                new_contact[phone] = change
            else:
                new_contact[f"row:{change.key}"] = change
        complex_ = list(new_contact.values())
        if complex_:
            answer = self.client.create_leads_complex([self._body(c, None) for c in complex_])
            for change, created in zip(complex_, answer, strict=True):
                ids[change.key] = {"lead": str(created.id)}
                if created.contact_id is not None:
                    ids[change.key]["contact"] = str(created.contact_id)
                    self._remember_contact(change.payload["contact"]["phone"], str(created.contact_id))
        if plain:
            bodies = []
            for change in plain:
                contact = self._contact_of(change.payload["contact"]["phone"])
                ids[change.key] = {"contact": contact} if contact else {}
                bodies.append(self._body(change, contact))
            for change, lead in zip(plain, self.client.create_leads(bodies), strict=True):
                ids[change.key]["lead"] = str(lead.id)
        outcomes = []
        for change in creates:
            got = ids.get(change.key, {})
            if got.get("lead"):
                pipeline_id = int(change.payload["lead"]["pipeline_id"])
                self.lead_index(pipeline_id).remember(change.key, LeadRef(got["lead"], got.get("contact")))
                outcomes.append(Outcome(change.key, "succeeded", "create", got))
            else:
                outcomes.append(Outcome(change.key, "rejected", "create", got, "amoCRM returned no lead"))
        return outcomes

    def _body(self, change: Change, contact_id: str | None) -> dict[str, Any]:
        lead = change.payload["lead"]
        body: dict[str, Any] = {
            "name": lead["name"],
            "pipeline_id": lead["pipeline_id"],
            "status_id": lead["status_id"],
            "request_id": change.key,
        }
        if lead["fields"]:
            body["custom_fields_values"] = _custom_fields(lead["fields"])
        contact = change.payload["contact"]
        if contact_id is not None:
            body["_embedded"] = {"contacts": [{"id": int(contact_id)}]}
        elif contact["name"] or contact["phone"]:
            item: dict[str, Any] = {"name": contact["name"] or contact["phone"]}
            if contact["phone"]:
                item["custom_fields_values"] = [
                    {"field_code": "PHONE", "values": [{"value": contact["phone"], "enum_code": "MOB"}]}
                ]
            body["_embedded"] = {"contacts": [item]}
        return body

    def _contact_of(self, phone: str | None) -> str | None:
        key = phone_key(phone, COUNTRY) if phone else None
        return self.contacts.get(key) if key else None

    def _remember_contact(self, phone: str | None, contact_id: str) -> None:
        key = phone_key(phone, COUNTRY) if phone else None
        if key:
            self.contacts.remember([key], contact_id)


# ---- reading the file -------------------------------------------------------------------------


@dataclass
class Sheet:
    """A file's rows as checked: good rows, bad rows, how many rows were read."""

    title: str
    rows: list[Row] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    read: int = 0
    ignored_headers: tuple[str, ...] = ()


def read_sheet(path: Path, sheet: str | None) -> Sheet:
    """Raises FileProblem when the file cannot be read as a workbook with a header row."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, zipfile.BadZipFile, KeyError) as exc:
        raise FileProblem(f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise FileProblem(f"{path.name} has no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        rows = [(n, tuple(cells)) for n, cells in enumerate(ws.iter_rows(min_row=1, values_only=True), start=1)]
    finally:
        book.close()
    columns = find_columns(iter(rows))
    ignored = columns.ignored
    if "company" in columns.index:  # read, but the connector cannot find or link a company by name yet
        ignored += (f"{cells_at(rows, columns.header_row, columns.index['company'])} (companies are not written yet)",)
    result = Sheet(ws.title, ignored_headers=ignored)
    for number, cells in rows[columns.header_row :]:
        parsed = parse_row(number, cells, columns)
        if parsed is None:
            continue
        result.read += 1
        if isinstance(parsed, BadRow):
            result.bad.append(parsed)
        else:
            result.rows.append(parsed)
    return result


def cells_at(rows: Sequence[tuple[int, tuple[Any, ...]]], number: int, column: int) -> str:
    return str(rows[number - 1][1][column]).strip()


def account_of(client: AmoCrmClient, settings: SheetsSettings) -> Account:
    pipelines = client.list_pipelines()
    return Account(
        pipelines=pipelines,
        default_pipeline=choose_pipeline(pipelines, settings.pipeline_id, settings.pipeline_keyword),
        fields=fields_by_name(client.list_custom_fields("leads"), settings.field_ids),
        trigger_names=settings.trigger_names,
        trigger_status_id=settings.trigger_status_id,
        zone=settings.zone,
    )


def desired_rows(sheet: Sheet, account: Account) -> tuple[list[Desired], dict[str, int]]:
    """One `Desired` per good row (a row failing against the account joins `sheet.bad`), and the
    row number of each key."""
    desired: list[Desired] = []
    row_of: dict[str, int] = {}
    for row in sheet.rows:
        try:
            payload = lead_of(row, account)
        except ValueError as exc:
            sheet.bad.append(BadRow(row.number, str(exc)))
            continue
        if row.key in row_of:
            sheet.bad.append(BadRow(row.number, f"the same lead as row {row_of[row.key]}"))
            continue
        row_of[row.key] = row.number
        desired.append(Desired(row.key, payload))
    sheet.bad.sort(key=lambda b: b.number)
    return desired, row_of


# ---- the command ------------------------------------------------------------------------------


def run_import(path: Path, *, sheet_name: str | None, dry_run: bool, env: dict[str, str]) -> dict[str, Any]:
    """Import the file; the summary. Raises FileProblem, ConfigError or IntegrationError."""
    from integration_sync.defs.resources import warehouse_resource
    from integration_sync.ops.inspect import amocrm_account

    settings = SheetsSettings.from_env(env)
    sheet = read_sheet(path, sheet_name)
    with amocrm_account(FLOW).client() as client:
        account = account_of(client, settings)
        desired, row_of = desired_rows(sheet, account)
        warehouse = warehouse_resource().warehouse()
        run_id = f"xlsx-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        engine = SyncEngine(warehouse, flow=FLOW, entity=ENTITY, run_id=run_id, dry_run=dry_run, mode="create_only")
        order_no = account.fields.get(ORDER_NO)
        contacts = AmoContactIndex.load(warehouse, client.root, ContactKeyRule(region=COUNTRY))
        destination = XlsxLeadsDestination(
            client,
            warehouse,
            contacts,
            order_no_field=order_no.id if order_no else None,
            batch_size=settings.import_batch_size,
            delay_s=settings.import_delay_s,
        )
        if dry_run:
            report = dry_run_report(engine, desired, destination)
        else:
            try:
                report = engine.run(desired, destination)
            finally:
                destination.save()
    return summary(sheet, report, row_of, run_id)


def dry_run_report(engine: SyncEngine, desired: Sequence[Desired], destination: XlsxLeadsDestination) -> SyncReport:
    """The engine's plan, with the creates whose lead amoCRM already has (an import whose ledger is
    lost) counted as there: reads only, writes nothing to amoCRM or the warehouse."""
    report = SyncReport(dry_run=True, mode=engine.mode)
    start = destination.requests_used()
    changes, _ = engine.plan(desired, report)
    creates = [c for c in changes if c.operation == "create"]
    found = destination.resolve(creates) if creates else {}
    remaining = [c for c in changes if c.key not in found]
    report.skipped += len(changes) - len(remaining)
    report.planned = len(remaining)
    report.plan = planned(remaining)
    report.api_requests = destination.requests_used() - start
    return report


def summary(sheet: Sheet, report: SyncReport, row_of: dict[str, int], run_id: str) -> dict[str, Any]:
    rejected = [{"row": row_of.get(key), "key": key, "reason": message} for key, message in report.rejected_samples]
    result: dict[str, Any] = {
        "sheet": sheet.title,
        "run_id": run_id,
        "dry_run": report.dry_run,
        "read": sheet.read,
        "bad": len(sheet.bad),
        "created": report.created + report.settled,  # settled: made by an answer lost, or a crashed run
        "already_there": report.unchanged + report.skipped,
        "rejected": report.rejected + report.parked,
        "bad_rows": [{"row": b.number, "reason": b.reason} for b in sheet.bad],
        "rejected_rows": rejected,
        "api_requests": report.api_requests,
    }
    if sheet.ignored_headers:
        result["ignored_columns"] = list(sheet.ignored_headers)
    if report.dry_run:
        result["would_create"] = report.planned
        result["plan"] = [
            {"row": row_of.get(p.key), "key": p.key, "fields": {f.path: f.new for f in p.fields}} for p in report.plan
        ]
    return result


def exit_code(result: dict[str, Any]) -> int:
    return 1 if result["bad"] or result["rejected"] else 0


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{'dry run: ' if result['dry_run'] else ''}read {result['read']}, bad {result['bad']}, "
        + (f"would create {result['would_create']}" if result["dry_run"] else f"created {result['created']}")
        + f", already there {result['already_there']}, rejected {result['rejected']}"
    ]
    lines += [f"  row {b['row']}: {b['reason']}" for b in result["bad_rows"]]
    lines += [f"  row {r['row']} rejected by amoCRM: {r['reason']}" for r in result["rejected_rows"]]
    for plan in result.get("plan", []):
        lead = plan["fields"]
        lines.append(f"  row {plan['row']}: would create «{lead.get('lead.name')}» ({plan['key']})")
    if result.get("ignored_columns"):
        lines.append(f"  columns not imported: {', '.join(result['ignored_columns'])}")
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"integration-sync: error: {message}", file=sys.stderr)
    return 2


def cmd_import_xlsx(args: argparse.Namespace) -> int:
    from integration_sync.ops.inspect import NotConfigured

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    try:
        result = run_import(Path(args.file), sheet_name=args.sheet, dry_run=args.dry_run, env=dict(os.environ))
    except FileProblem as exc:
        return _fail(str(exc))
    except NotConfigured as exc:
        return _fail(f"the seller's amoCRM account is not configured: {exc}")
    except (ConfigError, AuthError) as exc:
        return _fail(str(exc))
    except IntegrationError as exc:  # connector errors carry no secret
        print(f"integration-sync: amoCRM: {exc} (rows not yet pushed are pushed by the next import)", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else render(result))
    return exit_code(result)


def add_command(groups: CommandGroups) -> None:
    """Registers `integration-sync amocrm import-xlsx`."""
    parser = groups.under("amocrm", "amoCRM operator tools").add_parser(
        "import-xlsx", help="create amoCRM leads from an Excel file (the seller's flow, amocrm_sheets)"
    )
    parser.add_argument("file", help="the .xlsx file: a header row, then one lead per row")
    parser.add_argument("--dry-run", action="store_true", help="read and check; print what would be created")
    parser.add_argument("--sheet", help="the sheet to read (default: the first)")
    parser.add_argument("--project-dir", default=".", help="where .env is read from")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=cmd_import_xlsx)

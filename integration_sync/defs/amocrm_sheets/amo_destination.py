"""amoCRM as the destination of the sheet's edits (sheet → amoCRM): order numbers and stage moves.

Each change is one operator edit (`mapping.operator_edit`: never an echo of our own write). Before
writing, the leads are re-read in bulk (50 per request) and each edit is checked against amoCRM now:
- the status: applied only when amoCRM still shows what we last wrote to the row; if amoCRM moved
  the lead since (a manager, another integration, a restored warehouse), amoCRM wins — the edit is
  logged as a conflict and the row is rewritten from amoCRM by the other push;
- «Заказ №» belongs to the sheet: written when amoCRM does not hold it yet, and a lead still before
  «Заказ отправлен» is moved there (never out of a closed stage).
All patches go in `PATCH /leads` batches of 50; a batch refused for some leads is split by the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_fields import field_value
from integration_sync.connectors.amocrm_models import Lead
from integration_sync.defs.amocrm_sheets.mapping import (
    AccountMap,
    OperatorEdit,
    display_status,
    target_status,
)
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.sync.engine import Change, Outcome

LEAD = "lead"


@dataclass
class AmoLeadDestination:
    """The seller's leads, written from the sheet's edits (see the module docstring)."""

    client: AmoCrmClient
    account: AccountMap
    settings: SheetsSettings
    name: str = "amocrm"
    primary_entity: str = LEAD
    batch_size: int = 50
    counts: dict[str, int] = field(default_factory=dict)

    def requests_used(self) -> int:
        return int(self.client.requests_used)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """Nothing to look up: an edit's lead always exists, so finding it says nothing about whether
        the edit was applied. Edits left in flight by a killed run are pushed again; `_decide` sees in
        amoCRM what is applied already and writes only the rest."""
        return {}

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        leads = {lead.id: lead for lead in self.client.get_leads([int(c.key) for c in changes], with_contacts=False)}
        outcomes: list[Outcome] = []
        patches: list[tuple[Change, dict[str, Any], str]] = []
        for change in changes:
            lead = leads.get(int(change.key))
            if lead is None or lead.is_deleted:
                outcomes.append(self._reject(change, "the lead is not in amoCRM (deleted or merged?)"))
                continue
            decided = self._decide(change, lead)
            if isinstance(decided, Outcome):
                outcomes.append(decided)
            else:
                patches.append((change, decided[0], decided[1]))
        if patches:
            self.client.update_leads([patch for _, patch, _ in patches])
            for change, _, message in patches:
                outcomes.append(Outcome(change.key, "succeeded", "update", {LEAD: change.key}, message))
        return outcomes

    def _reject(self, change: Change, message: str) -> Outcome:
        self._count("edits_refused")
        return Outcome(change.key, "rejected", "update", {LEAD: change.key}, message)

    def _decide(self, change: Change, lead: Lead) -> Outcome | tuple[dict[str, Any], str]:
        payload = change.payload
        pipeline = self.account.pipeline(lead.pipeline_id)
        if pipeline is None:
            return self._reject(
                change, f"the lead is now in pipeline {lead.pipeline_id}, which the flow does not serve"
            )
        status_id = int(lead.status_id or 0)
        stage = pipeline.stage(status_id)
        shown = display_status(pipeline.statuses.get(status_id, ""), stage)
        choice: str | None = payload.get("choice")
        notes: list[str] = []
        if choice is not None:
            base = payload.get("choice_over")
            if not base:
                choice = None
                notes.append("the row was never written by the flow: its status is not acted on")
            elif target_status(OperatorEdit(choice=choice), pipeline, stage, self.settings) == status_id:
                choice = None  # amoCRM is there already (a run killed before it heard so): no conflict
            elif shown != base:
                choice = None
                self._count("conflicts_amocrm_won")
                notes.append(f"conflict: amoCRM moved the lead to «{shown}» since the row showed «{base}»; amoCRM wins")
        order_no: str | None = payload.get("order_no")
        order_field = self.account.fields.get("Заказ №")
        if order_no is not None:
            if order_field is None:
                return self._reject(change, "the lead field «Заказ №» is not in amoCRM (SHEETS_FIELD_IDS_JSON)")
            if str(lead.field_value(order_field) or "").strip() == order_no:
                order_no = None  # amoCRM holds it already
        edit = OperatorEdit(order_no=order_no, choice=choice)
        target = target_status(edit, pipeline, stage, self.settings)
        patch: dict[str, Any] = {"id": lead.id}
        if order_no is not None and order_field is not None:
            patch["custom_fields_values"] = [field_value(order_field, order_no)]
            self._count("order_numbers_written")
        if target is not None and target != status_id:
            patch.update(status_id=target, pipeline_id=pipeline.id)
            self._count("leads_moved")
        if len(patch) == 1:
            operation = "conflict" if any(n.startswith("conflict") for n in notes) else "noop"
            return Outcome(
                change.key, "succeeded", operation, {LEAD: change.key}, "; ".join(notes) or "nothing to change"
            )
        return patch, "; ".join(notes)

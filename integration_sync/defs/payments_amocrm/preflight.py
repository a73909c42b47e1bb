"""The payments_amocrm preflight: amoCRM answers, and the pipelines, statuses, lead and contact
fields and enum values the payments settings name exist (amoCRM drops a value for an unknown field
or enum id without an error). Used by `integration-sync doctor` and at the start of a push."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.lib.preflight import (
    amo_fields,
    amo_pipelines,
    amocrm_checks,
    call,
    chosen,
    enum_problems,
    environment,
    field_problems,
    pipeline_problems,
    setting_problems,
)

if TYPE_CHECKING:  # the resources import Dagster; the CLI's doctor stays light until it checks
    from integration_sync.defs.payments_amocrm.resources import PaymentsResource

ACCOUNT_PREFIX = "PAYMENTS_"
STAGE_VARS = (
    ("AMO_PIPELINE_SITE", "AMO_STATUS_AUTOPAY_SITE"),
    ("AMO_PIPELINE_YANDEX", "AMO_STATUS_AUTOPAY_YANDEX"),
    ("AMO_PIPELINE_PARTNERS", "AMO_STATUS_AUTOPAY_PARTNERS"),
)
LEAD_FIELD_VARS = (
    "AMO_LEAD_FIELD_SUBJECTS",
    "AMO_LEAD_FIELD_DIRECTION",
    "AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT",
    "AMO_LEAD_FIELD_TOTAL_PAID",
    "AMO_LEAD_FIELD_PURCHASE_COUNT",
    "AMO_LEAD_FIELD_LAST_PAYMENT_DATE",
    "AMO_LEAD_FIELD_PAYMENT_ID",
    "AMO_LEAD_FIELD_INVOICE_ID",
)
OPTIONAL_INTS = (
    *LEAD_FIELD_VARS,
    "AMO_DIRECTION_EGE",
    "AMO_DIRECTION_OGE",
    "AMO_CONTACT_FIELD_TG_ID",
    "AMO_CONTACT_FIELD_TG_USERNAME",
    "PAYMENTS_RESPONSIBLE_USER_ID",
)


def subject_enums(payments: PaymentsResource) -> list[tuple[str, int]]:
    """AMO_SUBJECT_ENUMS as (its name for each subject, enum id)."""
    raw = json.loads(payments.subject_enums_json or "{}")
    return [(f"AMO_SUBJECT_ENUMS[{name}]", int(enum_id)) for name, enum_id in raw.items()]


def problems(
    client: AmoCrmClient, payments: PaymentsResource, account_var: str = "AMO_BASE_URL", auth_var: str | None = None
) -> list[str]:
    """Pipelines and statuses, lead fields with their enums, contact fields: three requests."""
    pipelines, lines = call(account_var, "amoCRM", lambda: amo_pipelines(client), auth_var)
    if pipelines is None:
        return lines
    for (pipeline_var, status_var), (pipeline_id, status_id) in zip(
        STAGE_VARS,
        (
            (payments.pipeline_site, payments.status_autopay_site),
            (payments.pipeline_yandex, payments.status_autopay_yandex),
            (payments.pipeline_partners, payments.status_autopay_partners),
        ),
        strict=True,
    ):
        lines += pipeline_problems(pipelines, pipeline_var, pipeline_id, status_var, status_id)
    every_status = set().union(*pipelines.values()) if pipelines else set()
    lines += [
        f"PAYMENTS_EXCLUDED_STATUSES: {status_id} is not a status of any pipeline"
        for status_id in payments.excluded_statuses
        if status_id not in every_status
    ]
    lead_fields, failed = call(account_var, "amoCRM", lambda: amo_fields(client, "leads"))
    lines += failed
    if lead_fields is not None:
        ids = (
            payments.field_subjects,
            payments.field_direction,
            payments.field_last_payment_amount,
            payments.field_total_paid,
            payments.field_purchase_count,
            payments.field_last_payment_date,
            payments.field_payment_id,
            payments.field_invoice_id,
        )
        lines += field_problems(lead_fields, "leads", list(zip(LEAD_FIELD_VARS, ids, strict=True)))
        directions = [
            (var, enum_id)
            for var, enum_id in (
                ("AMO_DIRECTION_EGE", payments.direction_ege),
                ("AMO_DIRECTION_OGE", payments.direction_oge),
            )
            if enum_id is not None
        ]
        lines += enum_problems(lead_fields, "AMO_LEAD_FIELD_DIRECTION", payments.field_direction, directions)
        try:
            subjects = subject_enums(payments)
        except (ValueError, TypeError, AttributeError):
            lines.append('AMO_SUBJECT_ENUMS must be a JSON object like {"Математика": 123}')
            subjects = []
        lines += enum_problems(lead_fields, "AMO_LEAD_FIELD_SUBJECTS", payments.field_subjects, subjects)
    contact_named = [
        ("AMO_CONTACT_FIELD_TG_ID", payments.contact_tg_id_field),
        ("AMO_CONTACT_FIELD_TG_USERNAME", payments.contact_tg_username_field),
    ]
    if any(field_id is not None for _, field_id in contact_named):
        contact_fields, failed = call(account_var, "amoCRM", lambda: amo_fields(client, "contacts"))
        lines += failed
        if contact_fields is not None:
            lines += field_problems(contact_fields, "contacts", contact_named)
    return lines


def push_preflight(ctx: Any, client: AmoCrmClient) -> list[str]:
    """The push's check: the pipelines, statuses, fields and enums it is about to write exist."""
    payments: PaymentsResource = ctx.resources.payments
    return problems(client, payments)


def doctor(env: Mapping[str, str]) -> list[str]:
    """Every check, against the amoCRM account `env` points at."""
    from integration_sync.defs.payments_amocrm.resources import payments_resource

    account_var = chosen(env, ACCOUNT_PREFIX, "AMO_BASE_URL")
    stage_vars = [name for pair in STAGE_VARS for name in pair]
    lines = setting_problems(env, (*stage_vars, account_var), (*stage_vars, *OPTIONAL_INTS))
    if lines:
        return lines
    with environment(env):
        payments = payments_resource().process_config_and_initialize()
    return amocrm_checks(env, ACCOUNT_PREFIX, lambda crm, var, auth: problems(crm, payments, var, auth))

"""Resources of the payments → amoCRM flow: the inbox it reads and the seed's AMO_* rules for payments
(pipelines by UTM, fields, enums, CREATE_IF_NOT_FOUND). amoCRM itself is the shared resource."""

from __future__ import annotations

import json
import os

import dagster as dg
from pydantic import Field

from integration_sync.defs.payments_amocrm.mapping import (
    PARTNER_SOURCES,
    YANDEX_MEDIUMS,
    LeadFields,
    PaymentSettings,
    Stage,
)
from integration_sync.defs.resources import env_float, env_int, env_str
from integration_sync.webhooks.settings import inbox_path_from_env


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class PaymentsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where new payment leads go, which fields they fill, and how failed payments are retried."""

    inbox_path: str
    pipeline_site: int
    status_autopay_site: int
    pipeline_yandex: int
    status_autopay_yandex: int
    pipeline_partners: int
    status_autopay_partners: int
    partner_sources: list[str] = Field(default_factory=lambda: list(PARTNER_SOURCES))
    yandex_mediums: list[str] = Field(default_factory=lambda: list(YANDEX_MEDIUMS))
    excluded_statuses: list[int] = Field(default_factory=list)
    field_subjects: int | None = None
    field_direction: int | None = None
    field_last_payment_amount: int | None = None
    field_total_paid: int | None = None
    field_purchase_count: int | None = None
    field_last_payment_date: int | None = None
    field_payment_id: int | None = None
    field_invoice_id: int | None = None
    direction_ege: int | None = None
    direction_oge: int | None = None
    subject_enums_json: str = ""
    contact_tg_id_field: int | None = None
    contact_tg_username_field: int | None = None
    create_if_not_found: bool = True
    responsible_user_id: int | None = None
    default_country: str = "RU"
    retry_backoff_s: float = 60.0
    max_attempts: int = 8
    max_delay_minutes: int = 60

    def settings(self) -> PaymentSettings:
        directions = {name: enum_id for name, enum_id in (("ЕГЭ", self.direction_ege), ("ОГЭ", self.direction_oge))}
        return PaymentSettings(
            site=Stage(self.pipeline_site, self.status_autopay_site),
            yandex=Stage(self.pipeline_yandex, self.status_autopay_yandex),
            partners=Stage(self.pipeline_partners, self.status_autopay_partners),
            lead_fields=LeadFields(
                subjects=self.field_subjects,
                direction=self.field_direction,
                last_payment_amount=self.field_last_payment_amount,
                total_paid=self.field_total_paid,
                purchase_count=self.field_purchase_count,
                last_payment_date=self.field_last_payment_date,
                payment_id=self.field_payment_id,
                invoice_id=self.field_invoice_id,
            ),
            subject_enums={str(k): int(v) for k, v in json.loads(self.subject_enums_json or "{}").items()},
            direction_enums={name: enum_id for name, enum_id in directions.items() if enum_id is not None},
            contact_tg_id_field=self.contact_tg_id_field,
            contact_tg_username_field=self.contact_tg_username_field,
            partner_sources=tuple(self.partner_sources),
            yandex_mediums=tuple(self.yandex_mediums),
            extra_excluded_statuses=frozenset(self.excluded_statuses),
            create_if_not_found=self.create_if_not_found,
            responsible_user_id=self.responsible_user_id,
            default_country=self.default_country,
        )


def payments_resource() -> PaymentsResource:
    create = env_str("CREATE_IF_NOT_FOUND").strip().lower()
    return PaymentsResource(
        inbox_path=str(inbox_path_from_env()),
        pipeline_site=dg.EnvVar.int("AMO_PIPELINE_SITE"),
        status_autopay_site=dg.EnvVar.int("AMO_STATUS_AUTOPAY_SITE"),
        pipeline_yandex=dg.EnvVar.int("AMO_PIPELINE_YANDEX"),
        status_autopay_yandex=dg.EnvVar.int("AMO_STATUS_AUTOPAY_YANDEX"),
        pipeline_partners=dg.EnvVar.int("AMO_PIPELINE_PARTNERS"),
        status_autopay_partners=dg.EnvVar.int("AMO_STATUS_AUTOPAY_PARTNERS"),
        partner_sources=_csv(env_str("PAYMENTS_PARTNER_SOURCES")) or list(PARTNER_SOURCES),
        yandex_mediums=_csv(env_str("PAYMENTS_YANDEX_MEDIUMS")) or list(YANDEX_MEDIUMS),
        excluded_statuses=[int(s) for s in _csv(env_str("PAYMENTS_EXCLUDED_STATUSES"))],
        field_subjects=env_int("AMO_LEAD_FIELD_SUBJECTS", None),
        field_direction=env_int("AMO_LEAD_FIELD_DIRECTION", None),
        field_last_payment_amount=env_int("AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT", None),
        field_total_paid=env_int("AMO_LEAD_FIELD_TOTAL_PAID", None),
        field_purchase_count=env_int("AMO_LEAD_FIELD_PURCHASE_COUNT", None),
        field_last_payment_date=env_int("AMO_LEAD_FIELD_LAST_PAYMENT_DATE", None),
        field_payment_id=env_int("AMO_LEAD_FIELD_PAYMENT_ID", None),
        field_invoice_id=env_int("AMO_LEAD_FIELD_INVOICE_ID", None),
        direction_ege=env_int("AMO_DIRECTION_EGE", None),
        direction_oge=env_int("AMO_DIRECTION_OGE", None),
        subject_enums_json=env_str("AMO_SUBJECT_ENUMS"),
        contact_tg_id_field=env_int("AMO_CONTACT_FIELD_TG_ID", None),
        contact_tg_username_field=env_int("AMO_CONTACT_FIELD_TG_USERNAME", None),
        create_if_not_found=create not in ("0", "false", "no", "off"),
        responsible_user_id=env_int("PAYMENTS_RESPONSIBLE_USER_ID", None),
        default_country=os.environ.get("PAYMENTS_DEFAULT_COUNTRY") or "RU",
        retry_backoff_s=env_float("PAYMENTS_RETRY_BACKOFF_S", 60.0),
        max_attempts=env_int("PAYMENTS_MAX_ATTEMPTS", 8) or 8,
        max_delay_minutes=env_int("PAYMENTS_MAX_DELAY_MINUTES", 60) or 60,
    )

"""The amocrm_sheets flow's settings, read from the seed's own variable names (no Dagster here).

`SheetsSettings.from_env(env)` parses and checks them; a wrong value raises `ConfigError` naming its
variable, so `doctor` and a run say the same thing. Pipelines, the trigger stage and custom fields are
found by name per pipeline; `PIPELINE_ID`, `TRIGGER_STATUS_ID`, `DROPDOWN_STATUS_MAP_JSON` and
`SHEETS_FIELD_IDS_JSON` are overrides only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integration_sync.connectors.errors import ConfigError

FLOW = "amocrm_sheets"
DEFAULT_ZONE = "Asia/Tashkent"
Rotation = Literal["monthly", "hourly", "off"]

# The lead custom fields the row shows, by the names the seed's account gives them.
LEAD_FIELD_NAMES: tuple[str, ...] = ("Продукт", "Дата заказа", "Регион", "Код сотрудника", "Заказ №")


def _problem(variable: str, message: str) -> ConfigError:
    return ConfigError(FLOW, f"{variable}: {message}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _problem(name, f"{raw!r} is not a whole number") from None
    if value < minimum:
        raise _problem(name, f"must be at least {minimum}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _problem(name, f"{raw!r} is not a number") from None
    if value < 0:
        raise _problem(name, f"must not be negative, not {value}")
    return value


def _date(env: Mapping[str, str], name: str) -> date | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _problem(name, f"{raw!r} is not a date (YYYY-MM-DD)") from None


def parse_created_after(raw: str) -> int:
    """`LEADS_CREATED_AFTER` as a Unix time: `DD.MM.YYYY HH:MM:SS` (UTC, the seed's form), a date
    `DD.MM.YYYY` or `YYYY-MM-DD`, or a Unix timestamp; empty or 0 means no limit."""
    text = raw.strip()
    if not text or text == "0":
        return 0
    if text.isdigit():
        return int(text)
    for form in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text, form).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise _problem("LEADS_CREATED_AFTER", f"{text!r} is neither DD.MM.YYYY HH:MM:SS nor a Unix timestamp")


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = (env.get(name) or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _problem(name, f"is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(value, dict):
        raise _problem(name, "must be a JSON object")
    return value


def parse_dropdown_map(raw: Mapping[str, Any]) -> dict[str, dict[int, int]]:
    """`DROPDOWN_STATUS_MAP_JSON`: a dropdown value → a status id for every pipeline (`{"Отказ": 143}`)
    or per pipeline (`{"Отказ": {"9100001": 91000014}}`); pipeline 0 means any pipeline, id 0 means
    "find it by name" (as in the seed)."""
    parsed: dict[str, dict[int, int]] = {}
    for value, target in raw.items():
        try:
            if isinstance(target, Mapping):
                per = {int(pipeline): int(status) for pipeline, status in target.items()}
            else:
                per = {0: int(target)}
        except (TypeError, ValueError):
            raise _problem(
                "DROPDOWN_STATUS_MAP_JSON", f"{value!r} must map to a status id or {{pipeline: id}}"
            ) from None
        parsed[str(value).strip()] = {p: s for p, s in per.items() if s}
    return parsed


def _zone(env: Mapping[str, str]) -> str:
    name = (env.get("SHEETS_TIMEZONE") or "").strip() or DEFAULT_ZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _problem("SHEETS_TIMEZONE", f"{name!r} is not a time zone (e.g. Asia/Tashkent)") from None
    return name


@dataclass(frozen=True)
class SheetsSettings:
    """What the seller's sync does, as the seed's configuration table names it."""

    sheet_id: str = ""
    worksheet: str = "Sheet1"
    trigger_names: tuple[str, ...] = ()
    pipeline_keyword: str = ""
    pipeline_id: int = 0
    trigger_status_id: int = 0
    dropdown_map: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    field_ids: Mapping[str, int] = field(default_factory=dict)
    leads_created_after: int = 0
    staff_cache_ttl_s: int = 300
    webhook_dedup_ttl_s: int = 60
    sync_poll_seconds: int = 10
    rotation: Rotation = "monthly"
    initial_sync_from: date | None = None
    initial_sync_to: date | None = None
    import_batch_size: int = 50
    import_delay_s: float = 0.5
    timezone: str = DEFAULT_ZONE
    poll_minutes: int = 5

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SheetsSettings:
        names = [env.get("TRIGGER_STATUS_NAME") or "", *(env.get("TRIGGER_STATUS_NAMES") or "").split(",")]
        rotation = (env.get("SHEET_ROTATION_INTERVAL") or "monthly").strip().lower()
        if rotation not in ("monthly", "hourly", "off"):
            raise _problem("SHEET_ROTATION_INTERVAL", f"{rotation!r} is not monthly, hourly or off")
        fields = _json_object(env, "SHEETS_FIELD_IDS_JSON")
        try:
            field_ids = {str(k): int(v) for k, v in fields.items() if v}
        except (TypeError, ValueError):
            raise _problem("SHEETS_FIELD_IDS_JSON", "every value must be a field id") from None
        first, last = _date(env, "INITIAL_SYNC_DATE_FROM"), _date(env, "INITIAL_SYNC_DATE_TO")
        if first and last and last < first:
            raise _problem("INITIAL_SYNC_DATE_TO", f"{last} is before INITIAL_SYNC_DATE_FROM {first}")
        return cls(
            sheet_id=(env.get("GOOGLE_SHEET_ID") or "").strip(),
            worksheet=(env.get("GOOGLE_WORKSHEET_NAME") or "").strip() or "Sheet1",
            trigger_names=tuple(dict.fromkeys(n.strip() for n in names if n.strip())),
            pipeline_keyword=(env.get("PIPELINE_KEYWORD") or "").strip(),
            pipeline_id=_int(env, "PIPELINE_ID", 0),
            trigger_status_id=_int(env, "TRIGGER_STATUS_ID", 0),
            dropdown_map=parse_dropdown_map(_json_object(env, "DROPDOWN_STATUS_MAP_JSON")),
            field_ids=field_ids,
            leads_created_after=parse_created_after(env.get("LEADS_CREATED_AFTER") or ""),
            staff_cache_ttl_s=_int(env, "STAFF_CACHE_TTL_SEC", 300),
            webhook_dedup_ttl_s=_int(env, "WEBHOOK_DEDUP_TTL_SEC", 60),
            sync_poll_seconds=_int(env, "SYNC_POLL_SECONDS", 10, minimum=2),
            rotation=rotation,  # type: ignore[arg-type]
            initial_sync_from=first,
            initial_sync_to=last or (first and datetime.now(UTC).date()),
            import_batch_size=_int(env, "IMPORT_BATCH_SIZE", 50, minimum=1),
            import_delay_s=_float(env, "IMPORT_DELAY_SEC", 0.5),
            timezone=_zone(env),
            poll_minutes=_int(env, "SHEETS_AMO_POLL_MINUTES", 5, minimum=1),
        )


def settings_problems(env: Mapping[str, str]) -> list[str]:
    """For `doctor`: what is wrong with the flow's own settings, one line each naming the variable."""
    try:
        settings = SheetsSettings.from_env(env)
    except ConfigError as exc:
        return [exc.message]
    problems: list[str] = []
    if not settings.trigger_names and not settings.trigger_status_id:
        problems.append("TRIGGER_STATUS_NAME (or TRIGGER_STATUS_ID) is not set: no lead would ever get a row")
    if not settings.sheet_id:
        problems.append("GOOGLE_SHEET_ID is not set")
    return problems

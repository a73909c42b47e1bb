"""The staff KPI (the seed's dashboard), as pure functions: per employee and month of lead creation in
the flow's zone, orders (tracked leads), sent, successful, refused and conversion (successful ÷ orders).

An employee is found in the Staff tab by «Код сотрудника» with or without leading zeros (`0134` =
`134`); a code not in Staff is its own row «<code> (not in Staff)», a lead without one «(no code)».
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

NO_CODE = "(no code)"
NOT_IN_STAFF = "(not in Staff)"
HEADERS: tuple[str, ...] = ("Сотрудник", "Заказов", "Отправлено", "Успешно", "Отказ", "Конверсия")


@dataclass(frozen=True)
class KpiLead:
    """A tracked lead as the KPI needs it (stage: trigger | sent | won | lost | other)."""

    lead_id: int
    created_at: datetime
    employee_code: str | None
    stage: str


@dataclass(frozen=True)
class StaffMember:
    code: str
    name: str


@dataclass(frozen=True)
class KpiRow:
    month: str  # YYYY-MM in the flow's zone
    employee: str
    orders: int
    sent: int
    successful: int
    refused: int
    known: bool = True  # the code is in Staff

    @property
    def conversion(self) -> float:
        return round(self.successful / self.orders, 3) if self.orders else 0.0

    def cells(self) -> list[str | int | float]:
        return [self.employee, self.orders, self.sent, self.successful, self.refused, self.conversion]


@dataclass(frozen=True)
class KpiTable:
    """One month's rows, as the Dashboard tab and the asset's metadata show them."""

    month: str
    rows: tuple[KpiRow, ...]

    @property
    def orders(self) -> int:
        return sum(r.orders for r in self.rows)

    @property
    def successful(self) -> int:
        return sum(r.successful for r in self.rows)

    @property
    def conversion(self) -> float:
        return round(self.successful / self.orders, 3) if self.orders else 0.0


def code_key(code: object) -> str:
    """A staff code without spaces and leading zeros (`0134` → `134`, `000` → `0`); "" when empty."""
    text = str(code if code is not None else "").strip()
    if text.endswith(".0") and text[:-2].isdigit():  # a code read back as a number
        text = text[:-2]
    return (text.lstrip("0") or "0") if text else ""


def staff_index(staff: Iterable[StaffMember]) -> dict[str, str]:
    """Code key → name; the first row of a code wins, rows without a code or name are skipped."""
    index: dict[str, str] = {}
    for member in staff:
        key, name = code_key(member.code), member.name.strip()
        if key and name:
            index.setdefault(key, name)
    return index


def month_of(moment: datetime, zone: tzinfo) -> str:
    """The YYYY-MM of a moment in the zone (a naive moment is UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime("%Y-%m")


def _employee(code: str | None, names: dict[str, str]) -> tuple[str, str, bool]:
    """(group key, label, known) of a lead's employee code."""
    key = code_key(code)
    if not key:
        return "", NO_CODE, False
    if key in names:
        return key, names[key], True
    return key, f"{str(code).strip()} {NOT_IN_STAFF}", False


def staff_kpi(leads: Iterable[KpiLead], staff: Iterable[StaffMember], zone: tzinfo) -> list[KpiRow]:
    """Every (month, employee) with its numbers, by month then Staff employees by name, then codes not
    in Staff, then «(no code)»."""
    names = staff_index(staff)
    counts: dict[tuple[str, str], list[int]] = {}
    labels: dict[str, tuple[str, bool]] = {}
    for lead in sorted(leads, key=lambda x: x.lead_id):
        key, label, known = _employee(lead.employee_code, names)
        labels.setdefault(key, (label, known))
        numbers = counts.setdefault((month_of(lead.created_at, zone), key), [0, 0, 0, 0])
        numbers[0] += 1
        for i, stage in enumerate(("sent", "won", "lost"), start=1):
            numbers[i] += lead.stage == stage
    rows = [
        KpiRow(month, labels[key][0], n[0], n[1], n[2], n[3], known=labels[key][1])
        for (month, key), n in counts.items()
    ]
    return sorted(rows, key=lambda r: (r.month, not r.known, r.employee == NO_CODE, r.employee))


def month_table(rows: Sequence[KpiRow], month: str) -> KpiTable:
    return KpiTable(month, tuple(r for r in rows if r.month == month))


def orders_not_in_staff(leads: Iterable[KpiLead], staff: Iterable[StaffMember]) -> list[tuple[int, str]]:
    """(lead id, code as given) of every order whose employee code is empty or not in Staff."""
    names = staff_index(staff)
    return [
        (lead.lead_id, (lead.employee_code or "").strip())
        for lead in sorted(leads, key=lambda x: x.lead_id)
        if code_key(lead.employee_code) not in names
    ]


def markdown(table: KpiTable) -> str:
    """The month's table as markdown (Dagster shows it in the asset's metadata)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in table.rows:
        name = row.employee.replace("|", "\\|")
        lines.append(f"| {name} | {row.orders} | {row.sent} | {row.successful} | {row.refused} | {row.conversion} |")
    if not table.rows:
        lines.append(f"| no orders in {table.month} |" + " |" * (len(HEADERS) - 1))
    return "\n".join(lines)

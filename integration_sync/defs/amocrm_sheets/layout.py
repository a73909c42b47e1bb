"""The seller's sheet, written down once: the tabs, their columns, the status dropdown, who owns what.

Every other module (setup, rotation, the pushes, the checks, the README) reads the layout from here.
A tab that does not start with exactly these headers is not synced (its problem is recorded), so a
renamed header or an inserted column can never make us write into the wrong column or move a lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

LEAD_ID: Final = "ID сделки"
CONTACT: Final = "Клиент"
PHONE: Final = "Телефон"
COMPANY: Final = "Компания"
PRODUCT: Final = "Продукт"
ORDER_DATE: Final = "Дата заказа"
REGION: Final = "Регион"
EMPLOYEE_CODE: Final = "Код сотрудника"
RESPONSIBLE: Final = "Ответственный"
STATUS: Final = "Статус"
ORDER_NO: Final = "Заказ №"

COLUMNS: Final[tuple[str, ...]] = (
    LEAD_ID,
    CONTACT,
    PHONE,
    COMPANY,
    PRODUCT,
    ORDER_DATE,
    REGION,
    EMPLOYEE_CODE,
    RESPONSIBLE,
    STATUS,
    ORDER_NO,
)
# amoCRM owns A..I (we overwrite them); the status is two-way (operator's dropdown ↔ amoCRM's stage);
# «Заказ №» belongs to the sheet's operators (we write it only when we append the row).
AMO_OWNED: Final[tuple[str, ...]] = COLUMNS[: COLUMNS.index(STATUS)]
TWO_WAY: Final[tuple[str, ...]] = (STATUS,)
SHEET_OWNED: Final[tuple[str, ...]] = (ORDER_NO,)

IN_PROGRESS: Final = "В процессе"
AT_COURIER: Final = "У курера"
SUCCESS: Final = "Успешно"
REFUSED: Final = "Отказ"
STATUS_CHOICES: Final[tuple[str, ...]] = (IN_PROGRESS, AT_COURIER, SUCCESS, REFUSED)

STAFF_TAB: Final = "Staff"
STAFF_COLUMNS: Final[tuple[str, ...]] = ("№", "Код сотрудника", "Сотрудник", "Отдел")
DASHBOARD_TAB: Final = "Dashboard"


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def col(name: str) -> int:
    """The 0-based index of a column of the main tab."""
    return COLUMNS.index(name)


def letter(name: str) -> str:
    return column_letter(col(name))


LAST_LETTER: Final = column_letter(len(COLUMNS) - 1)
STATUS_LETTER: Final = letter(STATUS)
AMO_LAST_LETTER: Final = column_letter(len(AMO_OWNED) + len(TWO_WAY) - 1)  # A..J: what an update writes


def quoted(title: str) -> str:
    """A tab's title as A1 notation wants it (quotes doubled)."""
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class HeaderProblem:
    """Why a tab's header row is not the layout: which column, what was expected, what is there."""

    column: str
    expected: str
    found: str

    def describe(self) -> str:
        if not self.found:
            return f"column {self.column}: header «{self.expected}» is missing"
        if not self.expected:
            return f"column {self.column}: unexpected header «{self.found}» (a column was inserted?)"
        return f"column {self.column}: header is «{self.found}», expected «{self.expected}»"


def header_problems(header: Sequence[str], expected: Sequence[str] = COLUMNS) -> list[HeaderProblem]:
    """Differences between a tab's first row and the layout (surrounding spaces and case ignored).
    Extra columns after the layout's last one are allowed (operators' notes)."""
    problems: list[HeaderProblem] = []
    for i, name in enumerate(expected):
        found = header[i].strip() if i < len(header) else ""
        if found.casefold() != name.casefold():
            problems.append(HeaderProblem(column_letter(i), name, found))
    return problems


def pad(row: Sequence[str], width: int = len(COLUMNS)) -> list[str]:
    """A row read from the sheet (trailing empty cells trimmed by Google) to the layout's width."""
    cells = [str(c) for c in row[:width]]
    return cells + [""] * (width - len(cells))

"""A1 notation of the Sheets emulator: parse ``'Tab'!A1:C``, ``Tab``, ``A:B``, ``2:3`` and render ranges back."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CELL_RE = re.compile(r"^([A-Za-z]{0,3})(\d{0,7})$")
_PLAIN_TITLE_RE = re.compile(r"^[A-Za-z0-9_]+$")


class RangeError(ValueError):
    """A range the API refuses with "Unable to parse range: ..."."""


@dataclass(frozen=True)
class A1Range:
    """A rectangle of one tab; bounds are 0-based, ends exclusive, None where the range is open."""

    title: str | None
    row0: int = 0
    row1: int | None = None
    col0: int = 0
    col1: int | None = None


def col_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def col_index(letters: str) -> int:
    value = 0
    for ch in letters.upper():
        value = value * 26 + (ord(ch) - 64)
    return value - 1


def quote_title(title: str) -> str:
    """How the API writes a tab name inside a range (quoted only when it has to be)."""
    if _PLAIN_TITLE_RE.match(title) and not _CELL_RE.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _split_title(text: str) -> tuple[str | None, str | None]:
    """``'My tab'!A1`` -> ("My tab", "A1"); ``Tab`` -> ("Tab", None) unless it reads as cells."""
    if text.startswith("'"):
        i, title = 1, ""
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    title, i = title + "'", i + 2
                    continue
                rest = text[i + 1 :]
                if rest == "":
                    return title, None
                if rest.startswith("!"):
                    return title, rest[1:]
                raise RangeError(text)
            title, i = title + text[i], i + 1
        raise RangeError(text)
    if "!" in text:
        title, cells = text.rsplit("!", 1)
        return title, cells
    if _looks_like_cells(text):
        return None, text
    return text, None


def _looks_like_cells(text: str) -> bool:
    parts = text.split(":")
    return 1 <= len(parts) <= 2 and all(p and _CELL_RE.match(p) for p in parts)


def _corner(text: str, whole: str) -> tuple[int | None, int | None]:
    match = _CELL_RE.match(text)
    if not match or not text:
        raise RangeError(whole)
    letters, digits = match.groups()
    if digits and int(digits) < 1:
        raise RangeError(whole)
    return (col_index(letters) if letters else None), (int(digits) - 1 if digits else None)


def parse_a1(text: str) -> A1Range:
    """Parse a range as the API reads it; raises `RangeError` for what it cannot parse."""
    if not text.strip():
        raise RangeError(text)
    title, cells = _split_title(text.strip())
    if title is not None and title == "":
        raise RangeError(text)
    if cells is None:
        return A1Range(title)
    parts = cells.split(":")
    if len(parts) > 2:
        raise RangeError(text)
    c0, r0 = _corner(parts[0], text)
    if len(parts) == 1:
        if c0 is None or r0 is None:
            raise RangeError(text)
        return A1Range(title, r0, r0 + 1, c0, c0 + 1)
    c1, r1 = _corner(parts[1], text)
    if (c0 is None) != (c1 is None) and r0 is None:  # "A:3" style nonsense
        raise RangeError(text)
    row0 = r0 if r0 is not None else 0
    col0 = c0 if c0 is not None else 0
    row1 = r1 + 1 if r1 is not None else None
    col1 = c1 + 1 if c1 is not None else None
    if (row1 is not None and row1 <= row0) or (col1 is not None and col1 <= col0):
        # the API swaps reversed corners; keep it simple and normalise
        row0, row1 = (min(row0, (row1 or 1) - 1), max(row0 + 1, row1 or 0)) if row1 is not None else (row0, None)
        col0, col1 = (min(col0, (col1 or 1) - 1), max(col0 + 1, col1 or 0)) if col1 is not None else (col0, None)
    return A1Range(title, row0, row1, col0, col1)


def render(title: str, row0: int, row1: int, col0: int, col1: int) -> str:
    """``Sheet1!A1:D4`` (``Sheet1!D4`` for one cell), ends exclusive."""
    start = f"{col_letter(col0)}{row0 + 1}"
    end = f"{col_letter(col1 - 1)}{row1}"
    cells = start if (row1 - row0, col1 - col0) == (1, 1) else f"{start}:{end}"
    return f"{quote_title(title)}!{cells}"

"""Normalized identities every flow matches records on (phones in E.164, emails lower-cased), and the
business time zones flows count days in."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

# Kazakhstan is UTC+5 nationwide since 2024-03-01, but a system tzdata older than 2024a still says +6
# for Asia/Almaty and zoneinfo reads the system's first: a fixed zone is the one safe definition
# (partitions, schedules and mapping rules all use this).
KAZAKHSTAN_ZONE = "Etc/GMT-5"
KAZAKHSTAN = ZoneInfo(KAZAKHSTAN_ZONE)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUNK_8 = ("RU", "KZ")


def normalize_phone(raw: Any, region: str = "RU") -> str | None:
    """A phone in E.164 (+77011234567), or None when it is not a possible number.

    Handles national forms of the region (10 digits, the 8 trunk prefix of Russia and Kazakhstan),
    spaces, dashes and brackets; a number with its own + country code keeps it.
    """
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return None
    text = str(raw).strip()
    if not text:
        return None
    digits = re.sub(r"\D", "", text)
    if region in _TRUNK_8 and len(digits) == 11 and digits[0] == "8" and not text.startswith("+"):
        text = "+7" + digits[1:]
    elif region == "UZ" and len(digits) == 10 and digits[0] == "8" and not text.startswith("+"):
        text = "+998" + digits[1:]  # Uzbekistan's old trunk 8 before the 9-digit national number
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: Any) -> str | None:
    """A trimmed, lower-cased email, or None when it does not look like one."""
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    return text if _EMAIL.match(text) else None

"""What a payment webhook body may hold so that the pipeline can store it.

The receiver refuses (422) and the loader of ``platform/payment_events`` quarantines a body that
breaks one of these bounds; no real payment comes near them. The warehouse cannot hold integers
outside int64, nesting past ~255 levels (the JSON writer's limit) or lone surrogates; ``cost`` and
``amount`` bounds keep the DECIMAL(18, 2) sum far from overflow.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

MAX_MONEY = Decimal(10**9)
MAX_ITEMS = 1000
MAX_DEPTH = 32
MAX_STRING = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class PayloadRefused(ValueError):
    """A body the pipeline cannot store; ``reason`` says why (never quotes the body)."""

    def __init__(self, reason: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.loc = loc


def _constant(name: str) -> Any:
    raise PayloadRefused(f"{name} is not a JSON number")


def load_json(body: bytes | str) -> Any:
    """The parsed body, or `PayloadRefused` if it is not UTF-8 JSON within the bounds above."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        data = json.loads(text, parse_constant=_constant)  # NaN, Infinity: not JSON
    except PayloadRefused:
        raise
    except RecursionError:
        raise PayloadRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        if "digits" in str(exc):  # Python's own limit on an integer's length, far past int64
            raise PayloadRefused("integer outside the 64-bit range") from None
        raise PayloadRefused("body is not UTF-8 JSON") from None
    # valid UTF-8 text holds no surrogate; only a \uD800-\uDFFF escape can make one
    check_tree(data, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_Where = tuple[Any, str] | None  # (parent, key): the path, built only when a bound is broken


def check_tree(data: Any, *, surrogates: bool = True) -> None:
    """Depth, string, integer, float and UTF-8 bounds of parsed JSON (iterative: no recursion
    limit); `surrogates=False` skips the UTF-8 check when the text cannot hold one."""
    stack: list[tuple[Any, int, _Where]] = [(data, 1, None)]
    while stack:
        value, depth, where = stack.pop()
        kind = type(value)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                raise PayloadRefused(f"nested deeper than {MAX_DEPTH} levels", _loc(where))
            if kind is dict:
                for key, child in value.items():
                    _check_string(key, surrogates, where)
                    stack.append((child, depth + 1, (where, key)))
            else:
                stack.extend((child, depth + 1, (where, str(i))) for i, child in enumerate(value))
        elif kind is str:
            _check_string(value, surrogates, where)
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise PayloadRefused("integer outside the 64-bit range", _loc(where))
        elif kind is float and not math.isfinite(value):  # 1e400
            raise PayloadRefused("number out of range", _loc(where))


def _check_string(value: str, surrogates: bool, where: _Where) -> None:
    if len(value) > MAX_STRING:
        raise PayloadRefused(f"string longer than {MAX_STRING} characters", _loc(where))
    if surrogates:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadRefused("string is not valid UTF-8 (lone surrogate)", _loc(where)) from None


def _loc(where: _Where) -> tuple[str, ...]:
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(key)
    return tuple(reversed(parts))

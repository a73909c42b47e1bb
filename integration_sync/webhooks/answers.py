"""What every receiver route shares: a refusal with its HTTP status and JSON body, reading a body within
a size limit (413 before reading when `Content-Length` says so, else while streaming), and comparing a
secret in constant time."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request


class Refused(Exception):
    """An answer other than success, with its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or `Refused` 413 past `limit` bytes (400 for a `Content-Length` that is no number)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise Refused(400, {"error": "invalid Content-Length"}) from None
        if declared > limit:
            raise Refused(413, {"error": f"body larger than {limit} bytes"})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, {"error": f"body larger than {limit} bytes"})
        chunks.append(chunk)
    return b"".join(chunks)


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two secrets (text compared as UTF-8, lone surrogates kept)."""
    left = a.encode("utf-8", "surrogateescape") if isinstance(a, str) else a
    right = b.encode("utf-8", "surrogateescape") if isinstance(b, str) else b
    return hmac.compare_digest(left, right)

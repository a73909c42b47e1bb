"""Error types raised by every connector.

All messages are built from redacted text: a connector error never carries a password, token, webhook
code or a URL containing one. Connectors raise these errors *outside* of ``except`` blocks (or
``from None``) so tracebacks show no chained httpx exception that could print a secret URL.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base class of every error raised by a connector."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # keep the errors picklable (multiprocess executors ship them between processes)
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[IntegrationError], args: tuple[object, ...], state: dict[str, object]) -> IntegrationError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(IntegrationError):
    """Missing or malformed configuration (URL, credentials, parameters)."""


class ApiError(IntegrationError):
    """The service answered with an error (or an answer we cannot use)."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request: str = "",
    ) -> None:
        parts = []
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(code)
        prefix = f"[{' '.join(parts)}] " if parts else ""
        where = f"{request}: " if request else ""
        IntegrationError.__init__(self, service, f"{where}{prefix}{message}")
        self.message = message
        self.status = status
        self.code = code
        self.request = request  # "METHOD redacted-url" when known


class AuthError(ApiError):
    """Bad or expired credentials, or access denied (401/403). Never retried."""


class RateLimitedError(ApiError):
    """The service kept throttling after all retries (or asked for a wait longer than allowed)."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(service, message, status=status, code=code, request=request)
        self.retry_after = retry_after


class TransientError(ApiError):
    """5xx or network failure that outlived the retries; the request is known not to be applied
    (nothing was sent, or the request was idempotent)."""


class BlockedError(ApiError):
    """The service says to stop every call (e.g. amoCRM's 403 HTML block page). Never retried."""


class AmbiguousWriteError(IntegrationError):
    """A non-idempotent request may or may not have been applied (connection dropped after sending,
    read timeout, 5xx on a write). Look the records up before re-creating them."""

    def __init__(self, service: str, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(service, message)
        self.method = method
        self.url = url


class BatchItemsError(ApiError):
    """The service refused a batch because of some of its items (amoCRM's 400 ``validation-errors``).

    ``item_errors`` maps each failing item's request id to its problems (``"path: detail (code)"``).
    The refused request applied nothing, so the other items of it can be sent again without the
    failing ones. A connector helper that splits a long list into several requests fills
    ``positions`` (request id → index of the item in the list it was given) and ``done`` (the results
    of the earlier requests, which WERE applied: items ``[0, len(done))``).
    """

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request: str = "",
        item_errors: dict[str, list[str]] | None = None,
        positions: dict[str, int] | None = None,
        done: list[object] | None = None,
    ) -> None:
        super().__init__(service, message, status=status, code=code, request=request)
        self.item_errors: dict[str, list[str]] = dict(item_errors or {})
        self.positions: dict[str, int] = dict(positions or {})
        self.done: list[object] = list(done or [])

    @property
    def failed_positions(self) -> list[int]:
        """Indexes (in the list given to the helper) of the items that were refused."""
        return sorted(self.positions[key] for key in self.item_errors if key in self.positions)

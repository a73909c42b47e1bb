"""Running the receiver: ``serve`` in the foreground (``python -m integration_sync.webhooks.server``),
``ReceiverServer`` under uvicorn in a background thread on a free loopback port (tests)."""

from __future__ import annotations

import logging
import os

import uvicorn

from integration_sync.serving import BackgroundServer
from integration_sync.webhooks.app import create_app
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.settings import ReceiverSettings, env_int


def log_requests_to_stderr() -> None:
    """uvicorn configures only its own loggers: give the receiver's one line per request a handler."""
    logger = logging.getLogger("integration_sync.webhooks")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # a root handler set up by someone else would print each line twice


def serve(settings: ReceiverSettings, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the receiver in the foreground until interrupted (access log off: our own line per request)."""
    log_requests_to_stderr()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)


class ReceiverServer(BackgroundServer):
    """The receiver under uvicorn in a background thread.

    ``with ReceiverServer(settings) as server: httpx.post(server.url("/webhook/payment"), ...)``.
    """

    name = "webhook receiver"

    def __init__(
        self, settings: ReceiverSettings, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.settings = settings
        super().__init__(create_app(settings), host, port, log_level, backlog=256)
        self.inbox: Inbox = self.app.state.inbox

    def stop(self) -> None:
        super().stop()
        self.app.state.writer.close()  # uvicorn runs here without lifespan events
        self.app.state.receipts.close()  # the receipts still queued are written


def main() -> None:
    """``python -m integration_sync.webhooks.server``: settings from the environment; a bad one ends
    with a message naming its variable, not a traceback."""
    try:
        settings = ReceiverSettings.from_env()
        port = env_int(os.environ, "WEBHOOK_PORT", 8090, minimum=1)
    except ValueError as exc:
        raise SystemExit(f"webhook receiver: {exc}") from None
    serve(settings, host=os.environ.get("WEBHOOK_HOST", "127.0.0.1"), port=port)


if __name__ == "__main__":
    main()

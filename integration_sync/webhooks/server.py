"""Running the receiver: ``serve`` in the foreground (``python -m integration_sync.webhooks.server``),
``ReceiverServer`` under uvicorn in a background thread on a free loopback port (tests)."""

from __future__ import annotations

import os

import uvicorn

from integration_sync.serving import BackgroundServer
from integration_sync.webhooks.app import create_app
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.settings import ReceiverSettings


def serve(settings: ReceiverSettings, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the receiver in the foreground until interrupted (access log off: our own line per request)."""
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


if __name__ == "__main__":
    serve(
        ReceiverSettings.from_env(),
        host=os.environ.get("WEBHOOK_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEBHOOK_PORT", "8090")),
    )

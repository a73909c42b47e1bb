"""Running the receiver: ``serve`` in the foreground (``python -m integration_sync.webhooks.server``),
``ReceiverServer`` under uvicorn in a background thread on a free loopback port (tests)."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType

import uvicorn

from integration_sync.webhooks.app import create_app
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.settings import ReceiverSettings


def serve(settings: ReceiverSettings, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the receiver in the foreground until interrupted (access log off: our own line per request)."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)


class ReceiverServer:
    """The receiver under uvicorn in a background thread.

    ``with ReceiverServer(settings) as server: httpx.post(server.url("/webhook/payment"), ...)``.
    Port 0 (the default) picks a free port; ``base_url`` is known as soon as it starts.
    """

    def __init__(
        self, settings: ReceiverSettings, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.inbox: Inbox = self.app.state.inbox
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, timeout: float = 10.0) -> ReceiverServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="off", access_log=False, backlog=256)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"webhook-receiver-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    serve(
        ReceiverSettings.from_env(),
        host=os.environ.get("WEBHOOK_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEBHOOK_PORT", "8090")),
    )

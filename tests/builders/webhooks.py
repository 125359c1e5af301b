"""A real webhook receiver on loopback: an http.server in a thread that checks signatures.

It verifies every request with ``standardwebhooks`` and its own copy of the
secret, as a receiving service would, and answers from a script of status codes
(the last one repeats). A request whose signature does not verify is answered
401 whatever the script says.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict | None
    answered: int


@dataclass
class WebhookReceiver:
    secret: str
    statuses: Sequence[int] = (200,)
    delay_s: float = 0.0
    location: str = "/moved"
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            payload, verified = None, False
        with self._lock:
            scripted = self.statuses[min(len(self.received), len(self.statuses) - 1)]
            status = scripted if verified else 401
            self.received.append(Received(path, headers, body, verified, payload, status))
        return status

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} of {count} requests came in {timeout}s")


def _handler(receiver: WebhookReceiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            status = receiver._answer(self.path, dict(self.headers.items()), body)
            answer = json.dumps({"status": status}).encode()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args) -> None:  # quiet
            pass

    return Handler


@contextmanager
def webhook_receiver(secret: str, **options) -> Iterator[WebhookReceiver]:
    """A receiver listening on a free loopback port until the block ends."""
    receiver = WebhookReceiver(secret=secret, **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

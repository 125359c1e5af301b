"""A real SMTP server for the e-mail tests: aiosmtpd on loopback, on a free port.

``smtp_server(settings)`` starts it and points Django's SMTP backend at it;
``fail_first`` makes its first answers to DATA a temporary failure (451), as a
busy relay gives, so a retry can be seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.builders.processes import free_port


@dataclass
class SmtpServer:
    """What the server was sent: every accepted message, and how many DATA commands came."""

    fail_first: int = 0
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    data_commands: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.data_commands += 1
            if self.data_commands <= self.fail_first:
                return "451 4.3.0 Try again later"
            message = message_from_bytes(envelope.content, policy=policy.default)
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            self.messages.append(message)
        return "250 Message accepted"

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        """The first ``count`` messages, once that many have come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.messages)} of {count} e-mails came in {timeout}s")


@contextmanager
def smtp_server(settings, *, fail_first: int = 0) -> Iterator[SmtpServer]:
    """A running server, with Django's mail settings pointing at it until the block ends."""
    server = SmtpServer(fail_first=fail_first, port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        yield server
    finally:
        controller.stop()

"""Local servers notifications are delivered to in the tests: an HTTP receiver (webhooks,
Slack) and an SMTP server (aiosmtpd). Their fixtures are in tests/conftest.py."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: Receiver = self.server.receiver  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", 0))
        delivery = Delivery(self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
        with server.lock:
            server.requests.append(delivery)
            failing = server.fail_next > 0
            if failing:
                server.fail_next -= 1
            else:
                server.accepted.append(delivery)
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@dataclass(eq=False)
class Receiver:
    """An HTTP server on 127.0.0.1: every POST in `requests`, the ones answered 200 in
    `accepted`; the next `fail_next` are answered 503."""

    requests: list[Delivery] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.receiver = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: object, _session: object, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (no TLS); what it received in `messages`."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self._mailbox = _Mailbox()
        self._controller = Controller(self._mailbox, hostname="127.0.0.1", port=port)
        self.host, self.port = "127.0.0.1", port

    @property
    def messages(self) -> list[Message]:
        return self._mailbox.messages

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

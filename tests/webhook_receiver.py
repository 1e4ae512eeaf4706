"""A real webhook receiver for the tests: an HTTP server that verifies every delivery with ``standardwebhooks``.

It records each request (headers, body, the secrets whose signature matched, when it came)
and answers from a script: a list of status codes taken in turn, then 200; ``hold_s`` keeps
the first request waiting before answering (a sender that dies meanwhile never hears it).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Arrival:
    at: float
    headers: dict[str, str]
    body: str
    verified_by: list[str]  # the secrets (by name) whose signature matched
    answered: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)  # name -> whsec_ secret
    script: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra answer headers (Retry-After)
    hold_s: float = 0.0
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/fathom"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = []
                for name, secret in list(receiver.secrets.items()):
                    try:
                        Webhook(secret).verify(body, headers)
                        verified.append(name)
                    except WebhookVerificationError:
                        pass
                with receiver.lock:
                    first = not receiver.arrivals
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.arrivals.append(Arrival(time.monotonic(), headers, body, verified, status))
                if first and receiver.hold_s:
                    time.sleep(receiver.hold_s)
                try:
                    self.send_response(status)
                    for k, v in receiver.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "text/plain")
                    self.end_headers()
                    self.wfile.write(f"receiver answered {status}".encode())
                except OSError:  # the sender went away while the request was held
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def of_type(self, event_type: str) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.event["type"] == event_type]

    def all(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

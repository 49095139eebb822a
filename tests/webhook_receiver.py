"""A webhook endpoint for tests: an HTTP server on 127.0.0.1 (a thread) that records each
request (path, headers, body, the peer it came from) and answers as told, plus a check of
a request's Standard Webhooks signature with the spec's own library."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, status: int = 200, body: bytes = b'{"received":true}',
                 headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.status, self.body, self.headers, self.delay = status, body, dict(headers or {}), delay
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": raw.decode(), "peer": self.client_address[0]})
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def verify(secret: str, request: dict[str, Any]) -> Any:
    """What a receiver does: standardwebhooks.Webhook(secret).verify (raises if forged)."""
    from standardwebhooks import Webhook

    return Webhook(secret).verify(request["body"], request["headers"])

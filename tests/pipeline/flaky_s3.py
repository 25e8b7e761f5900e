"""A fault-injecting HTTP proxy in front of the moto server: S3 that is briefly (or always) down.

The pipeline's real boto3 S3 client talks to this proxy (AWS_ENDPOINT_URL_S3); it forwards
everything to moto except what it was told to fail: GETs of chosen objects, which get the
503 SlowDown S3 answers when overloaded, or, during an outage, every request (or every write)
answered 503 SlowDown, 500 InternalError, or not at all. No boto3 code is patched.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
OUTAGE_ANSWERS = ("503", "500", "drop")  # "drop": the connection closed with no answer
_WRITES = ("PUT", "POST", "DELETE")  # PutObject, CopyObject, tagging, DeleteObject


class FlakyS3:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self._failures: dict[str, int] = {}  # quoted key -> GETs still to fail (-1: all)
        self._lock = threading.Lock()
        self.failed: list[str] = []
        self._outage: tuple[str, tuple[str, ...]] | None = None  # (answer, methods it hits)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers botocore's "Expect: 100-continue" at once

            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, key: str, times: int = -1) -> None:
        """Fail GetObject of `key` `times` times (-1: until cleared)."""
        with self._lock:
            self._failures[quote(key, safe="/~")] = times

    def go_down(self, answer: str = "503", writes_only: bool = False) -> None:
        """Fail every request (or, `writes_only`, every write) until come_back()."""
        assert answer in OUTAGE_ANSWERS, answer
        with self._lock:
            self._outage = (answer, _WRITES if writes_only else ("GET", "HEAD", *_WRITES))

    def come_back(self) -> None:
        with self._lock:
            self._outage = None

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._outage = None

    def _outage_answer(self, method: str) -> str | None:
        with self._lock:
            if self._outage and method in self._outage[1]:
                return self._outage[0]
        return None

    def _should_fail(self, method: str, path: str) -> bool:
        target, _, query = path.partition("?")
        if method != "GET" or "tagging" in query:
            return False
        with self._lock:
            for key, remaining in self._failures.items():
                if target.endswith("/" + key) and remaining != 0:
                    self._failures[key] = remaining - 1 if remaining > 0 else -1
                    self.failed.append(key)
                    return True
        return False

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        outage = self._outage_answer(request.command)
        if outage == "drop":
            request.close_connection = True  # the server closes the socket unanswered
            return
        if outage:
            status, document = (503, _SLOW_DOWN) if outage == "503" else (500, _INTERNAL_ERROR)
            self._answer(request, status, {"Content-Type": "application/xml"}, document)
            return
        if self._should_fail(request.command, request.path):
            self._answer(request, 503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request(request.command, request.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        passed = {
            k: v
            for k, v in response.getheaders()
            if k.lower() not in ("transfer-encoding", "connection", "content-length")
        }
        upstream.close()
        self._answer(
            request,
            response.status,
            passed,
            payload,
            head=request.command == "HEAD",
            length=response.getheader("Content-Length"),
        )

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        payload: bytes,
        head: bool = False,
        length: str | None = None,
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", length if head and length else str(len(payload)))
        request.end_headers()
        if not head:
            request.wfile.write(payload)

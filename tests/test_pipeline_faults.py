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

import boto3
import pytest

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


_shared: dict[str, FlakyS3] = {}


@pytest.fixture(scope="session")
def flaky_s3(moto_endpoint: str) -> FlakyS3:
    """One proxy per moto server, whichever test module asks first: the function under test
    keeps its S3 client (and so the proxy's address) for the whole session."""
    if moto_endpoint not in _shared:
        proxy = FlakyS3(moto_endpoint)
        threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
        _shared[moto_endpoint] = proxy
    return _shared[moto_endpoint]


def test_proxy_forwards_and_fails_on_demand(aws_env: str, flaky_s3: FlakyS3) -> None:
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = boto3.client(
        "s3", endpoint_url=flaky_s3.url, config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
    s3.create_bucket(Bucket="medfn-proxy-check")
    s3.put_object(Bucket="medfn-proxy-check", Key="a b+c.png", Body=b"x")
    flaky_s3.fail("a b+c.png", times=1)
    with pytest.raises(ClientError, match="SlowDown"):
        s3.get_object(Bucket="medfn-proxy-check", Key="a b+c.png")
    assert s3.get_object(Bucket="medfn-proxy-check", Key="a b+c.png")["Body"].read() == b"x"


@pytest.mark.parametrize(
    ("answer", "error"), [("503", "SlowDown"), ("500", "InternalError"), ("drop", "Connection was closed")]
)
def test_proxy_outage_fails_every_request_until_it_ends(
    aws_env: str, flaky_s3: FlakyS3, answer: str, error: str
) -> None:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3", endpoint_url=flaky_s3.url, config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
    s3.create_bucket(Bucket="medfn-outage-check")
    s3.put_object(Bucket="medfn-outage-check", Key="k", Body=b"x")
    flaky_s3.go_down(answer, writes_only=True)
    assert s3.get_object(Bucket="medfn-outage-check", Key="k")["Body"].read() == b"x"  # reads still work
    with pytest.raises((ClientError, BotoCoreError), match=error):
        s3.put_object(Bucket="medfn-outage-check", Key="k", Body=b"y")
    flaky_s3.go_down(answer)
    with pytest.raises((ClientError, BotoCoreError), match=error):
        s3.get_object(Bucket="medfn-outage-check", Key="k")
    flaky_s3.come_back()
    assert s3.get_object(Bucket="medfn-outage-check", Key="k")["Body"].read() == b"x"

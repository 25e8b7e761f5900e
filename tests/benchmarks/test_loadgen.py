"""The benchmarks' load generator times the steady state: each caller's first request is sent
and counted in the rate, but not timed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.loadgen import drive

FIRST_ON_A_CONNECTION_S = 0.5  # far over a loopback answer, even on a loaded machine


class SlowToStart(BaseHTTPRequestHandler):
    """Answers every POST; the first on each connection only after a pause."""

    protocol_version = "HTTP/1.1"  # keep-alive: one handler object per connection

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        if not getattr(self, "answered", False):
            time.sleep(FIRST_ON_A_CONNECTION_S)
            self.answered = True
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowToStart)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_each_callers_first_request_is_sent_and_counted_but_not_timed(url: str) -> None:
    load = drive(url, b"{}", {"content-type": "application/json"}, requests=20, concurrency=4, processes=1)
    assert len(load.latencies) == 20 - 4
    assert max(load.latencies) < FIRST_ON_A_CONNECTION_S
    assert load.rps == pytest.approx(20 / load.seconds)
    assert load.seconds >= FIRST_ON_A_CONNECTION_S  # the untimed first requests were still waited for


def test_a_run_with_no_request_left_to_time_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not timed"):
        drive(url, b"{}", {}, requests=4, concurrency=4, processes=1)

"""Shared fixtures: on-the-fly model stores, the real scan_classifier function, a moto S3 server,
and `medfn serve` itself on a loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from medfn.function import load_models
from medfn.gateway import load_gateway_plane
from medfn.http import create_app
from medfn.lambda_handler import make_handler
from medfn.serving import InferencePlane, server_runner
from medfn.serving.store import LocalStore
from tests.onnx_builders import affine_model, write_model_folder

REPO = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_VALIDATION", "false")


def load_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text("utf-8"))


def create_status_table(dynamodb: Any, name: str) -> None:
    """The pipeline's status table, keyed as the CDK app makes it, unless it exists already."""
    if name in dynamodb.list_tables()["TableNames"]:
        return
    keys = [("object_uri", "HASH"), ("object_version", "RANGE")]
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
    )


def create_series_table(dynamodb: Any, name: str) -> None:
    """The series table (medfn.pipeline.series.dynamo_table), keyed as the CDK app makes it."""
    if name in dynamodb.list_tables()["TableNames"]:
        return
    keys = [("series", "HASH"), ("item", "RANGE")]
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"medfn serve at {url} did not become ready")


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen  # type: ignore[type-arg]
    log: Path  # its stdout and stderr: a file, so that a chatty server never blocks on a full pipe

    def alive(self) -> bool:
        """The process still runs and answers: no request crashed it."""
        if self.process.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/v2/health/live", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def medfn_serve(*args: str, log: Path) -> Iterator[LiveServer]:
    """`medfn serve ARGS` on a free loopback port, ready to answer; stopped on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "medfn.cli", "serve", "--port", str(port), *args], cwd=REPO, stdout=sink, stderr=sink
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_ready(server.url)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(autouse=True)
def _main_thread_event_loop() -> None:
    """Mangum runs each event on the main thread's current loop; an `asyncio.run` in an earlier
    test leaves none, which a Lambda process, where nothing else runs a loop, never does."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="session")
def medfn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """All five functions behind one `medfn serve`, in one process: a request that kills it shows
    as a dead process (with several workers, uvicorn would quietly replace the one that died)."""
    folder = tmp_path_factory.mktemp("medfn_serve")
    with medfn_serve("--usage-store", str(folder / "usage.sqlite3"), log=folder / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def affine_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """`affine` (versions 1 and 2: y = 2x+1 and y = 3x+1), `tampered` (bad sha256), `hollow` (no file)."""
    root = tmp_path_factory.mktemp("model_store")
    write_model_folder(
        root, "affine", {1: affine_model(2.0), 2: affine_model(3.0)}, extra_toml='[version_policy]\npolicy = "all"\n'
    )
    write_model_folder(root, "tampered", {1: affine_model()}, sha_override={1: "0" * 64})
    hollow = write_model_folder(root, "hollow", {1: affine_model()})
    (hollow / "1" / "model.onnx").unlink()
    return LocalStore(root)


@pytest.fixture(scope="session")
def affine_plane(affine_store: LocalStore) -> InferencePlane:
    plane = InferencePlane(runner=server_runner())
    for name in ("affine", "tampered", "hollow"):
        plane.add(name, load_models(affine_store, name))
    return plane


@pytest.fixture(scope="session")
def affine_client(affine_plane: InferencePlane) -> TestClient:
    return TestClient(create_app(affine_plane, max_body_bytes=64 * 1024))


@pytest.fixture(scope="session")
def gateway_client() -> TestClient:
    """Every reference function in one local gateway app, as `medfn serve` builds it."""
    return TestClient(create_app(load_gateway_plane(REPO / "functions")), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def classifier_handler():  # type: ignore[no-untyped-def]
    return make_handler(str(REPO / "functions" / "scan_classifier" / "handler.py"))


@pytest.fixture(scope="session")
def classifier_client(classifier_handler) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(classifier_handler.function.plane), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on a loopback port; real boto3 clients talk HTTP to it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every boto3 client made in the test at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture(scope="session")
def live_affine_url(affine_plane: InferencePlane) -> Iterator[str]:
    """The affine app under a real uvicorn server on loopback, for unmodified HTTP clients."""
    with serve_in_thread(create_app(affine_plane)) as base:
        yield base.removeprefix("http://")


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """`app` under a real uvicorn server on a free loopback port; its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)

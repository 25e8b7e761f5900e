"""Fixtures of the pipeline tests against moto: the S3 fault proxy, and the function's AWS environment."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from tests.conftest import create_status_table
from tests.pipeline.flaky_s3 import FlakyS3
from tests.pipeline.s3_helpers import MAX_ATTEMPTS, STATUS_TABLE

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


@pytest.fixture
def pipeline_env(aws_env: str, flaky_s3: FlakyS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The function's environment in AWS, S3 behind the fault proxy; clients for the test itself."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would hide the faults
    monkeypatch.setenv("MEDFN_STATUS_TABLE", STATUS_TABLE)
    monkeypatch.setenv("MEDFN_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
    clients = {name: boto3.client(name, endpoint_url=aws_env) for name in ("s3", "dynamodb", "sqs")}
    create_status_table(clients["dynamodb"], STATUS_TABLE)
    flaky_s3.clear()
    return clients

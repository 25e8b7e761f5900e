"""Metering: usage records, EMF in Lambda, the SQLite store and local key enforcement."""

from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from mangum import Mangum

from medfn.cli import main
from medfn.http import create_app
from medfn.metering.emf import EmfMeter
from medfn.metering.keys import KeyGate, load_keys, period_start
from medfn.metering.middleware import Metering
from medfn.metering.pricing import LAMBDA_ARM64_PER_GB_SECOND, LAMBDA_PER_REQUEST, lambda_cost
from medfn.metering.record import UsageRecord
from medfn.metering.sqlite_store import SqliteMeter, read_usage
from medfn.metering.tiers import Tier
from tests.conftest import REPO, load_event

INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
TRIAL = Tier("trial", rate_limit=0.001, burst_limit=2, quota=100)
KEY_A, KEY_B = "a" * 24, "b" * 24


def local_client(affine_plane, tmp_path: Path, *tiers: Tier) -> tuple[TestClient, SqliteMeter]:  # type: ignore[no-untyped-def]
    from medfn.metering.keys import ApiKey

    meter = SqliteMeter(tmp_path / "usage.sqlite3")
    keys = [ApiKey("clinic-a", KEY_A, tiers[0]), ApiKey("clinic-b", KEY_B, tiers[-1])]
    metering = Metering(meter=meter, gate=KeyGate(keys), memory_mb={"affine": 512})
    return TestClient(create_app(affine_plane, metering=metering)), meter


def test_missing_or_unknown_key_is_403_like_api_gateway(affine_plane, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = local_client(affine_plane, tmp_path, TRIAL)
    for headers in ({}, {"x-api-key": "not-a-key"}):
        response = client.post("/v2/models/affine/infer", json=INFER, headers=headers)
        assert (response.status_code, response.json()) == (403, {"message": "Forbidden"})
    assert client.get("/v2/health/live").status_code == 200  # health needs no key, as in AWS


def test_rate_and_quota_are_429(affine_plane, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one_call = Tier("tiny", rate_limit=100, burst_limit=100, quota=1)
    client, _ = local_client(affine_plane, tmp_path, TRIAL, one_call)
    statuses = [
        client.post("/v2/models/affine/infer", json=INFER, headers={"x-api-key": KEY_A}).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]  # burst of 2, then the bucket is empty
    assert client.post("/v2/models/affine/infer", json=INFER, headers={"x-api-key": KEY_B}).status_code == 200
    over = client.post("/v2/models/affine/infer", json=INFER, headers={"x-api-key": KEY_B})
    assert (over.status_code, over.json()) == (429, {"message": "Limit Exceeded"})


def test_every_model_call_is_recorded_and_usage_prints_cost(affine_plane, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    roomy = Tier("roomy", rate_limit=1000, burst_limit=1000, quota=1000)
    client, meter = local_client(affine_plane, tmp_path, roomy)
    headers = {"x-api-key": KEY_A}
    assert client.post("/v2/models/affine/versions/1/infer", json=INFER, headers=headers).status_code == 200
    assert client.post("/v2/models/affine/infer", json=INFER, headers=headers).status_code == 200
    assert client.get("/v2/models/affine", headers=headers).status_code == 200
    assert client.post("/v2/models/nope/infer", json=INFER, headers=headers).status_code == 404
    assert client.post("/v2/models/affine/versions/x9%0A/infer", json=INFER, headers=headers).status_code == 404
    meter.close()
    from medfn.metering.sqlite_store import read_usage

    rows = [(u.api_key_id, u.model, u.version, u.status, u.billed_units, u.memory_mb) for u in read_usage(meter.path)]
    assert rows == [
        ("clinic-a", "affine", "1", 200, 1, 512),
        ("clinic-a", "affine", "2", 200, 1, 512),  # the latest served version answered
        ("clinic-a", "affine", "2", 200, 0, 512),  # metadata: recorded, not billed
        # a caller's text never becomes a metric dimension
        ("clinic-a", "unknown", "unknown", 404, 0, 1024),
        ("clinic-a", "affine", "unknown", 404, 0, 512),
    ]
    assert all(u.duration_ms > 0 for u in read_usage(meter.path))
    assert main(["usage", "--store", str(meter.path)]) == 0
    out = capsys.readouterr().out
    assert "clinic-a" in out and "affine" in out and "total estimated Lambda cost" in out


def test_a_usage_record_carries_the_request_id_its_caller_was_answered_with(affine_plane, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, meter = local_client(affine_plane, tmp_path, Tier("roomy", rate_limit=1000, burst_limit=1000, quota=1000))
    headers = {"x-api-key": KEY_A}
    sent = client.post("/v2/models/affine/infer", json=INFER, headers={**headers, "x-request-id": "trace-7"})
    made = client.post("/v2/models/affine/infer", json=INFER, headers=headers)  # the route makes one
    meter.close()
    assert [u.request_id for u in read_usage(meter.path)] == ["trace-7", made.headers["x-request-id"]]
    assert sent.headers["x-request-id"] == "trace-7" and len(made.headers["x-request-id"]) == 32


def test_quota_survives_a_restart(tmp_path: Path) -> None:
    meter = SqliteMeter(tmp_path / "usage.sqlite3")
    now = time.time()
    meter.record(UsageRecord(now, "clinic-a", "m", "1", 200, 3.0, 1, 512))
    meter.record(UsageRecord(period_start("MONTH", now) - 10, "clinic-a", "m", "1", 200, 3.0, 1, 512))
    assert meter.calls_since("clinic-a", period_start("MONTH", now)) == 1
    meter.close()


def test_a_flush_of_thousands_of_calls_stores_each_once(tmp_path: Path) -> None:
    # more rows than one INSERT statement takes, and a last, shorter statement
    meter = SqliteMeter(tmp_path / "usage.sqlite3", flush_s=3600)
    made = [
        UsageRecord(1_700_000_000.0 + i, f"key-{i % 3}", "m", "1", 200, i / 10, 1, 512, f"req-{i}")
        for i in range(2_345)
    ]
    for record in made:
        meter.record(record)
    meter.close()
    assert read_usage(tmp_path / "usage.sqlite3") == made


def test_api_gateway_key_id_reaches_cloudwatch_as_emf(affine_plane, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "affine_fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    adapter = Mangum(create_app(affine_plane), lifespan="off")  # metering from the environment
    event = copy.deepcopy(load_event("apigw_rest"))
    event.update(path="/v2/models/affine/infer", httpMethod="POST", body=json.dumps(INFER))
    event["headers"]["content-type"] = "application/json"
    response = adapter(event, None)
    assert response["statusCode"] == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == 1
    emf = lines[0]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "medfn"
    assert ["ApiKeyId", "Model"] in directive["Dimensions"]
    assert {m["Name"] for m in directive["Metrics"]} == {"Calls", "BilledUnits", "Duration"}
    assert (emf["ApiKeyId"], emf["Model"], emf["ModelVersion"], emf["BilledUnits"]) == ("key-id-1", "affine", "2", 1)
    assert emf["memory_mb"] == 2048 and emf["Duration"] > 0
    assert isinstance(emf["_aws"]["Timestamp"], int)


def test_emf_record_costs_microseconds() -> None:
    """The per-call path: one orjson line. Bound generously so a busy CI machine passes."""
    meter = EmfMeter("fn", stream=io.StringIO())
    usage = UsageRecord(time.time(), "key-id-1", "scan_classifier", "1", 200, 12.5, 1, 1024, "req-1")
    for _ in range(200):
        meter.record(usage)
    rounds = 5000
    started = time.perf_counter()
    for _ in range(rounds):
        meter.record(usage)
    per_call_us = (time.perf_counter() - started) / rounds * 1e6
    assert per_call_us < 50, f"EMF record took {per_call_us:.1f} µs a call"
    assert orjson.loads(meter.stream.getvalue().splitlines()[0])["ApiKeyId"] == "key-id-1"  # type: ignore[union-attr]


def test_lambda_cost_rounds_up_to_the_millisecond() -> None:
    assert lambda_cost(99.2, 1024) == pytest.approx(0.1 * LAMBDA_ARM64_PER_GB_SECOND + LAMBDA_PER_REQUEST)
    assert lambda_cost(100.0, 512) == pytest.approx(0.05 * LAMBDA_ARM64_PER_GB_SECOND + LAMBDA_PER_REQUEST)


def test_keys_file_with_the_repo_tiers(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'tiers_file = "{REPO / "infra" / "tiers.toml"}"\n[keys.clinic-a]\nvalue = "{KEY_A}"\ntier = "standard"\n'
    )
    [key] = load_keys(keys)
    assert (key.id, key.tier.name, key.tier.period) == ("clinic-a", "standard", "MONTH")
    keys.write_text(
        f'[tiers.x]\nrate_limit = 1\nburst_limit = 1\nquota = 5\n[keys.k]\nvalue = "{KEY_A}"\ntier = "gold"\n'
    )
    with pytest.raises(ValueError, match="tier 'gold' is not one of"):
        load_keys(keys)

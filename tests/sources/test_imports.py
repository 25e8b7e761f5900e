"""Each path imports only what it needs, checked in a fresh interpreter (deterministic).

An upload event must not pay for FastAPI and Mangum; an HTTP request must not pay for boto3
or Powertools, even in a function that also takes uploads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3

from tests.conftest import EVENTS, REPO, create_status_table
from tests.pipeline.test_corpus import corpus

_PROBE = """
import json, sys
from medfn.lambda_handler import make_handler
handler = make_handler({handler!r})
answer = handler(json.load(open({event!r})), None)
print(json.dumps({{"answer": answer, "loaded": sorted(m for m in {watched!r} if m in sys.modules)}}))
"""
_WATCHED = ["fastapi", "mangum", "starlette", "boto3", "botocore", "aws_lambda_powertools", "fhir", "pydicom"]
# medfn's own rooms: servers' batching and the local stores belong to neither Lambda path.
_WATCHED += ["medfn.http", "medfn.pipeline.worker", "medfn.serving.batching", "medfn.metering.sqlite_store"]
_WATCHED += ["medfn.metering.keys"]


def probe(event_path: str, env: dict[str, str]) -> dict:
    code = _PROBE.format(
        handler=str(REPO / "functions" / "scan_classifier" / "handler.py"), event=event_path, watched=_WATCHED
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_s3_upload_never_imports_fastapi(aws_env: str, tmp_path) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="medfn-imports")
    dicom = next(s for s in corpus() if s.kind == "dicom")
    put = s3.put_object(Bucket="medfn-imports", Key="one scan.dcm", Body=dicom.data)
    create_status_table(boto3.client("dynamodb", endpoint_url=aws_env), "medfn-imports")
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    event["Records"][0]["s3"]["bucket"]["name"] = "medfn-imports"
    event["Records"][0]["s3"]["object"].update(key="one+scan.dcm", eTag=put["ETag"].strip('"'), versionId=None)
    (tmp_path / "event.json").write_text(json.dumps(event))
    env = {**os.environ, "MEDFN_WARM_HTTP": "0", "MEDFN_STATUS_TABLE": "medfn-imports"}
    result = probe(str(tmp_path / "event.json"), env)
    assert result["answer"]["results"] == 1
    assert {"fastapi", "mangum", "starlette", "fhir"}.isdisjoint(result["loaded"])
    assert {"boto3", "aws_lambda_powertools", "pydicom"} <= set(result["loaded"])
    assert {"medfn.http", "medfn.serving.batching", "medfn.metering.sqlite_store"}.isdisjoint(result["loaded"])
    assert "medfn.pipeline.worker" in result["loaded"]
    assert s3.head_object(Bucket="medfn-imports", Key="results/one scan.dcm.json")


def test_an_http_request_never_imports_boto3_or_powertools() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEDFN_WARM_HTTP"}
    result = probe(str(EVENTS / "apigw_http.json"), env)
    assert result["answer"]["statusCode"] == 200
    assert {"boto3", "botocore", "aws_lambda_powertools", "fhir", "pydicom"}.isdisjoint(result["loaded"])
    assert {"fastapi", "mangum"} <= set(result["loaded"])
    assert {"medfn.pipeline.worker", "medfn.serving.batching"}.isdisjoint(result["loaded"])
    assert {"medfn.metering.sqlite_store", "medfn.metering.keys"}.isdisjoint(result["loaded"])
    assert "medfn.http" in result["loaded"]

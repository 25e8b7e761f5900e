"""The pieces around the PACS paths: the multipart splitter fed in any chunking, the destination
and its credentials from the environment (and Secrets Manager), retries, S3Sink, Lambda's wiring."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pydicom
import pytest
from moto import mock_aws

from medfn.dicomweb.credentials import Credentials, CredentialSource
from medfn.dicomweb.cstore import CStoreDestination
from medfn.dicomweb.delivery import RetryPolicy
from medfn.dicomweb.destination import DicomwebDestination, destination_from_env
from medfn.dicomweb.multipart import Limits, RelatedParser
from medfn.dicomweb.sinks import S3Sink
from medfn.errors import BadRequest, StorageUnavailable, UnprocessableInput
from medfn.sources.http import upload_sink
from medfn.studies.headers import read_header
from tests.pacs.conftest import ct_series


def test_the_splitter_gives_the_same_parts_however_the_body_is_chunked() -> None:
    parts = [b"first\r\n--not-the-boundary", b"", b"\r\n-b\r\n--c\r\n--" * 3, b"\r\n--bb"]
    body = b"\r\n" + b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts) + b"--b--"
    for size in (1, 2, 7, 64, len(body)):
        parser = RelatedParser(b"b", Limits(max_body_bytes=10_000))
        for start in range(0, len(body), size):
            parser.feed(body[start : start + size])
        got = parser.close()
        assert [p.data for p in got] == parts and {p.media_type for p in got} == {"application/dicom"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        (
            {"MEDFN_DICOMWEB_URL": "https://pacs.example/dicom-web/"},
            "DicomwebDestination('https://pacs.example/dicom-web')",
        ),
        ({"MEDFN_CSTORE_DESTINATION": "ORTHANC@pacs.example:4242"}, "CStoreDestination(ORTHANC@pacs.example:4242)"),
        ({"MEDFN_CSTORE_DESTINATION": "PACS@[::1]:104"}, "CStoreDestination(PACS@::1:104)"),
    ],
)
def test_the_destination_the_environment_names(env: dict[str, str], expected: str | None) -> None:
    destination = destination_from_env(env)
    assert (repr(destination) if destination else None) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"MEDFN_DICOMWEB_URL": "https://a/", "MEDFN_CSTORE_DESTINATION": "A@b:1"},
        {"MEDFN_DICOMWEB_URL": "ftp://pacs/"},
        {"MEDFN_CSTORE_DESTINATION": "pacs.example:4242"},
        {"MEDFN_CSTORE_DESTINATION": "A_TITLE_LONGER_THAN_16@h:1"},
        {"MEDFN_CSTORE_DESTINATION": "A@h:70000"},
        {"MEDFN_DICOMWEB_URL": "https://a/", "MEDFN_DESTINATION_ATTEMPTS": "many"},
        {"MEDFN_DICOMWEB_URL": "https://a/", "MEDFN_DICOMWEB_USER": "u"},
        {"MEDFN_DICOMWEB_URL": "https://a/", "MEDFN_DICOMWEB_TOKEN": "t", "MEDFN_DICOMWEB_USER": "u"},
        {"MEDFN_DICOMWEB_URL": "https://a/", "MEDFN_DICOMWEB_TOKEN": "t", "MEDFN_DICOMWEB_SECRET": "arn:x"},
    ],
)
def test_a_wrong_setting_is_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        destination_from_env(env)


def test_credentials_from_the_environment() -> None:
    basic = CredentialSource({"MEDFN_DICOMWEB_USER": "u", "MEDFN_DICOMWEB_PASSWORD": "p"}).get()
    assert basic is not None and basic.basic() == ("u", "p") and basic.headers() == {}
    token = CredentialSource({"MEDFN_DICOMWEB_TOKEN": "t0k"}).get()
    assert token is not None and token.headers() == {"Authorization": "Bearer t0k"} and token.basic() is None
    assert CredentialSource({}).get() is None
    assert "p" not in repr(basic) and "t0k" not in repr(token)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_credentials_from_secrets_manager(aws: None) -> None:
    secrets = boto3.client("secretsmanager")
    basic = secrets.create_secret(Name="pacs", SecretString=json.dumps({"username": "u", "password": "p"}))["ARN"]
    token = secrets.create_secret(Name="pacs-token", SecretString=json.dumps({"token": "t"}))["ARN"]
    broken = secrets.create_secret(Name="broken", SecretString="user:p")["ARN"]
    found = CredentialSource({"MEDFN_DICOMWEB_SECRET": basic}).get()
    assert found == Credentials("u", "p")
    assert CredentialSource({"MEDFN_DICOMWEB_SECRET": token}).get() == Credentials(token="t")
    with pytest.raises(StorageUnavailable, match="not JSON") as caught:  # retryable: fix the secret, redeliver
        CredentialSource({"MEDFN_DICOMWEB_SECRET": broken}).get()
    assert "user:p" not in str(caught.value)
    with pytest.raises(StorageUnavailable, match="Secrets Manager"):
        CredentialSource({"MEDFN_DICOMWEB_SECRET": basic + "-gone"}).get()


def test_retries_back_off_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    calls = []

    def down() -> None:
        calls.append(1)
        raise StorageUnavailable("no answer")

    policy = RetryPolicy(attempts=4, first_wait_s=1.0, max_wait_s=3.0)
    with pytest.raises(StorageUnavailable, match="failed 4 times; last: no answer"):
        policy.run(down, "a delivery", sleep=waits.append)
    assert len(calls) == 4 and len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 1.5 <= waits[2] <= 3.0  # doubled, capped, jittered

    def refused() -> None:
        calls.append(1)
        raise UnprocessableInput("refused")

    calls.clear()
    with pytest.raises(UnprocessableInput):
        policy.run(refused, "a delivery", sleep=waits.append)
    assert len(calls) == 1


def test_s3_sink_puts_under_the_function_prefix(aws: None) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="uploads", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    data = ct_series(1)[0]
    header = read_header(data)
    where = S3Sink("uploads", "ct_nodules").put(header, data)
    key = f"ct_nodules/{header.study_instance_uid}/{header.series_instance_uid}/{header.sop_instance_uid}.dcm"
    assert where == f"s3://uploads/{key}"
    stored = s3.get_object(Bucket="uploads", Key=key)
    assert stored["Body"].read() == data and stored["ContentType"] == "application/dicom"
    with pytest.raises(StorageUnavailable, match="put_object"):
        S3Sink("no-such-bucket", "ct_nodules/").put(header, data)


def test_lambda_takes_stow_rs_into_its_own_upload_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    def function(uploads: bool) -> Any:
        return SimpleNamespace(config=SimpleNamespace(name="ct_nodules", uploads=uploads))

    monkeypatch.delenv("MEDFN_UPLOAD_BUCKET", raising=False)
    assert upload_sink(function(True)) is None  # no bucket named: no STOW-RS route
    monkeypatch.setenv("MEDFN_UPLOAD_BUCKET", "uploads")
    assert upload_sink(function(False)) is None
    sink = upload_sink(function(True))
    assert isinstance(sink, S3Sink) and (sink.bucket, sink.prefix) == ("uploads", "ct_nodules/")


def test_results_that_are_not_dicom_are_refused_before_sending() -> None:
    with pytest.raises(UnprocessableInput, match="instance 1"):
        DicomwebDestination("http://127.0.0.1:9/").deliver([ct_series(1)[0], b"not dicom"])
    with pytest.raises(UnprocessableInput):
        CStoreDestination("A", "127.0.0.1", 9).deliver([b"not dicom"])
    assert pydicom.dcmread(io.BytesIO(ct_series(1)[0])).Modality == "CT"

"""Event shapes, settings, error sorting, status rules and FHIR: the pipeline without AWS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medfn.errors import ObjectMissing, StorageUnavailable, UnprocessableInput, UnsupportedMediaType
from medfn.pipeline.analysis import analyse
from medfn.pipeline.failures import error_code, is_poison, safe_reason
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.sqlite_status import SqliteStatusTable
from medfn.pipeline.types import ObjectRef, StatusRecord
from medfn.sources import UPLOAD_SOURCES, HttpEvents, S3EventBridgeEvents, S3Notifications, SqsUploads
from medfn.sources.eventbridge import from_s3_eventbridge
from medfn.sources.s3 import from_s3_notification
from medfn.sources.sqs import from_message_body
from tests.conftest import load_event
from tests.pipeline.test_corpus import corpus

SOURCE_OF = {
    "s3_object_created": S3Notifications,
    "s3_object_created_minimal": S3Notifications,
    "s3_object_removed": S3Notifications,
    "sqs_s3_object_created": SqsUploads,
    "sqs_s3_test_event": SqsUploads,
    "eventbridge_s3_object_created": S3EventBridgeEvents,
    "eventbridge_s3_object_deleted": S3EventBridgeEvents,
    "apigw_http": HttpEvents,
    "apigw_rest": HttpEvents,
    "alb": HttpEvents,
    "function_url": HttpEvents,
}


@pytest.mark.parametrize("name", sorted(SOURCE_OF))
def test_each_sample_event_is_claimed_by_exactly_one_source(name: str) -> None:
    event = load_event(name)
    claimed = [source for source in [HttpEvents, *UPLOAD_SOURCES] if source.infer(event)]
    assert claimed == [SOURCE_OF[name]]


def test_s3_notification_keys_are_url_decoded_once() -> None:
    (ref,) = from_s3_notification(load_event("s3_object_created")).objects
    assert ref == ObjectRef(
        "medfn-uploads",
        "ward 7/chest+pa.dcm",
        "096fKKXTRTtl3on89fVO.nfljtsv6qko",
        "d41d8cd98f00b204e9800998ecf8427e",
        1048576,
    )


def test_optional_fields_may_be_missing() -> None:
    (ref,) = from_s3_notification(load_event("s3_object_created_minimal")).objects
    assert (ref.key, ref.version_id, ref.etag, ref.size, ref.identity) == (
        "scan(1).png",
        None,
        None,
        None,
        "unversioned",
    )


def test_eventbridge_and_sqs_name_the_same_object_as_s3() -> None:
    direct = from_s3_notification(load_event("s3_object_created")).objects
    assert from_s3_eventbridge(load_event("eventbridge_s3_object_created")).objects == direct
    import json

    body = json.loads(load_event("sqs_s3_object_created")["Records"][0]["body"])
    assert from_message_body(body).objects == direct


@pytest.mark.parametrize("name", ["s3_object_removed", "eventbridge_s3_object_deleted"])
def test_deletes_are_ignored(name: str) -> None:
    parse = from_s3_notification if name.startswith("s3") else from_s3_eventbridge
    announced = parse(load_event(name))
    assert announced.objects == [] and len(announced.ignored) == 1


@pytest.mark.parametrize("body", [{"Event": "s3:TestEvent", "Bucket": "b"}, {"hello": 1}, ["a"], None])
def test_test_events_and_unknown_bodies_are_ignored(body: Any) -> None:
    announced = from_message_body(body)
    assert announced.objects == [] and announced.ignored


def test_ignored_events_through_the_sources_never_touch_aws(
    classifier_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDFN_STATUS_TABLE", "never-called")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a call would fail loudly
    function = classifier_handler.function
    assert S3Notifications(function)(load_event("s3_object_removed"), None)["ignored"] == 1
    assert S3EventBridgeEvents(function)(load_event("eventbridge_s3_object_deleted"), None)["ignored"] == 1
    assert SqsUploads(function)(load_event("sqs_s3_test_event"), None) == {"batchItemFailures": []}
    assert classifier_handler({"detail-type": "Scheduled Event", "source": "aws.events"}, None) == {"ignored": True}


def test_settings_from_the_environment() -> None:
    settings = PipelineSettings.from_env(
        {
            "MEDFN_RESULTS_PREFIX": "out",
            "MEDFN_QUARANTINE_MODE": "tag",
            "MEDFN_RESULT_FORMATS": "json, fhir",
            "MEDFN_MAX_ATTEMPTS": "5",
            "MEDFN_STATUS_TABLE": "t",
        }
    )
    assert (settings.results_prefix, settings.quarantine_mode, settings.formats, settings.max_attempts) == (
        "out/",
        "tag",
        ("json", "fhir"),
        5,
    )
    assert settings.is_own_output("any", "out/x.png.json") and settings.is_own_output("any", "quarantine/x")
    assert not settings.is_own_output("any", "outgoing/x.png")
    with pytest.raises(ValueError, match="QUARANTINE_MODE"):
        PipelineSettings.from_env({"MEDFN_QUARANTINE_MODE": "shred"})
    with pytest.raises(ValueError, match="RESULT_FORMATS"):
        PipelineSettings.from_env({"MEDFN_RESULT_FORMATS": "hl7v2"})


def test_errors_are_sorted_and_never_quote_foreign_text() -> None:
    assert is_poison(UnprocessableInput("x")) and is_poison(UnsupportedMediaType("x")) and is_poison(ObjectMissing("x"))
    assert not is_poison(StorageUnavailable("x")) and not is_poison(ValueError("x"))
    assert error_code(UnsupportedMediaType("x")) == "unsupported-media-type"
    try:
        raise ValueError("could not parse Doe^Jane born 19700101")
    except ValueError as exc:
        reason = safe_reason(exc)
    assert reason.startswith("internal error ValueError at test_events.py:") and "Doe" not in reason


def test_analyse_sniffs_the_bytes_not_the_name(classifier_handler: Any) -> None:
    plane, scans = classifier_handler.function.plane, {s.key: s for s in corpus()}
    assert (
        analyse(plane, "scan_classifier", scans["misnamed/really-a-dicom.png"].data).media_type == "application/dicom"
    )
    assert analyse(plane, "scan_classifier", scans["misnamed/really-a-png.dcm"].data).media_type == "image/png"
    with pytest.raises(UnprocessableInput, match="empty"):
        analyse(plane, "scan_classifier", b"")
    with pytest.raises(UnsupportedMediaType, match="JPEG Lossless"):
        analyse(plane, "scan_classifier", scans["poison/jpeg lossless.dcm"].data)


def test_fhir_report_is_valid_r4_with_one_observation_per_label(classifier_handler: Any) -> None:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from medfn.pipeline.fhir import diagnostic_report

    scan = next(s for s in corpus() if s.kind == "dicom")
    analysis = analyse(classifier_handler.function.plane, "scan_classifier", scan.data)
    report = DiagnosticReport.model_validate_json(
        diagnostic_report(ObjectRef("b", scan.key, etag="e"), analysis, "2026-01-01T00:00:00+00:00")
    )
    assert report.status == "preliminary" and len(report.contained) == len(report.result) == 2
    assert any(i.value == f"urn:oid:{analysis.body['sop_instance_uid']}" for i in report.identifier)
    assert report.conclusion == f"most likely: {analysis.body['label']}"


def test_sqlite_status_writes_one_record_and_only_a_retryable_one_is_replaced(tmp_path: Path) -> None:
    table, ref = SqliteStatusTable(tmp_path / "status.sqlite3"), ObjectRef("b", "k.png", etag="e1")
    assert table.count_failure(ref) == 1 and table.count_failure(ref) == 2 and table.settled(ref) is None
    assert table.record(StatusRecord(ref, "error", code="storage-unavailable", retryable=True))
    assert table.settled(ref) is None  # a redrive may still succeed
    assert table.record(StatusRecord(ref, "result", location="results/k.png.json"))
    assert table.settled(ref) == ("result", "results/k.png.json")
    assert not table.record(StatusRecord(ref, "error", code="x")) and table.count_failure(ref) is None
    assert [r["outcome"] for r in table.records()] == ["result"]
    table.close()


def test_fhir_report_of_a_segmentation_states_the_area() -> None:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from medfn.pipeline.analysis import Analysis
    from medfn.pipeline.fhir import diagnostic_report

    body = {
        "label": "lesion",
        "probabilities": {"lesion": 0.97, "none": 0.03},
        "mask": {"area_px": 74, "area_mm2": 36.26, "bounding_box": {}, "rle": {}},
    }
    analysis = Analysis("scan_segmenter", 1, "application/dicom", body, 5.0)
    report = DiagnosticReport.model_validate_json(
        diagnostic_report(ObjectRef("b", "ct.dcm", etag="e"), analysis, "2026-01-01T00:00:00+00:00")
    )
    (area,) = report.contained
    assert (area.code.text, float(area.valueQuantity.value), area.valueQuantity.code) == ("lesion area", 36.26, "mm2")
    assert report.conclusion == "lesion: 36.26 mm2"

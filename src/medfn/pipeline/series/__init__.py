"""DICOM instances assembled into series, and each complete series answered once (issue "Studies").

    table.py          SeriesKey, SeriesState, Member and the SeriesTable protocol
    sqlite_table.py   the local backend (`medfn watch`), which also says which series are due
    dynamo_table.py   the AWS backend: an instance and its count in one transaction
    checks.py         the stability check in AWS: a delayed SQS message back to the function's queue
    worker.py         instance arrivals and checks: claim, volume, model, results, one status record
    results.py        seg.dcm, sr.dcm, result.json (and fhir.json) under results/<study>/<series>/

Nothing here is imported by the HTTP path; boto3, pydicom and highdicom load inside the
functions that use them.
"""

from medfn import _lazy_names

_HOMES = {
    "DynamoSeriesTable": "dynamo_table",
    "SeriesKey": "table",
    "SeriesState": "table",
    "SeriesTable": "table",
    "SeriesWorker": "worker",
    "SqliteSeriesTable": "sqlite_table",
    "SqsCheckSender": "checks",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)

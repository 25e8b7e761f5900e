"""Event-triggered processing of uploaded scans: S3 (direct, SQS, EventBridge) and local folders.

    events.py          event shapes -> ObjectRefs (Powertools data classes)
    lambda_sources.py  the event sources the Lambda handler dispatches to (keys only)
    aws_processing.py  what they do at the first upload event: the S3 and DynamoDB worker
    worker.py          one object: settled? fetch, analyse, write, record; poison vs transient
    core.py            bytes -> type from the signature -> the model's answer (no transport)
    results.py         result JSON; fhir.py: FHIR R4 DiagnosticReport when asked
    storage.py         the storage protocol; s3_storage.py, folder_storage.py
    status.py          the status-record protocol; dynamo_status.py, sqlite_status.py
    folder_watch.py    `medfn watch`: a folder polled for arrivals, through the same worker
    settings.py        environment variables; errors.py: how failures are sorted

Nothing here is imported by the HTTP path, and boto3, Powertools and fhir.resources are
imported only inside the functions that use them. Import from the modules: this package
imports nothing itself, so a function's init pays only for `lambda_sources`' key checks.
"""

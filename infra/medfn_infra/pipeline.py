"""The scan pipeline: upload bucket -> S3 ObjectCreated -> SQS (with a DLQ) -> image function.

Each function that takes uploads listens on its own key prefix (`<function>/`) through its
own queue, so two image functions never compete for the same scan. A scan whose processing
keeps failing is retried `MAX_RECEIVES` times, then parked in the dead-letter queue.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from medfn_infra.acknowledgements import acknowledge_prefix
from medfn_infra.functions import FunctionParts, secure_queue
from medfn_infra.project import DeployedFunction
from medfn_infra.storage import Storage

MAX_RECEIVES = 3  # = MEDFN_MAX_ATTEMPTS: the pipeline writes its error record on the last one
RESULTS_PREFIX = "results/"
QUARANTINE_PREFIX = "quarantine/"


def upload_prefix(function: str) -> str:
    return f"{function}/"


def connect_uploads(scope: Construct, deployed: DeployedFunction, parts: FunctionParts, storage: Storage) -> sqs.Queue:
    name = deployed.name
    dead_letters = secure_queue(scope, f"{_id(name)}UploadDeadLetters", storage, retention_period=Duration.days(14))
    queue = secure_queue(
        scope,
        f"{_id(name)}Uploads",
        storage,
        # AWS's advice for Lambda consumers: at least six times the function's timeout
        visibility_timeout=Duration.seconds(6 * deployed.config.timeout_s),
        retention_period=Duration.days(4),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVES),
    )
    storage.uploads.add_event_notification(
        s3.EventType.OBJECT_CREATED, s3n.SqsDestination(queue), s3.NotificationKeyFilter(prefix=upload_prefix(name))
    )
    parts.alias.add_event_source(sources.SqsEventSource(queue, batch_size=1, report_batch_item_failures=True))
    parts.function.add_environment("MEDFN_RESULTS_BUCKET", storage.results.bucket_name)
    parts.function.add_environment("MEDFN_RESULTS_PREFIX", RESULTS_PREFIX)
    parts.function.add_environment("MEDFN_QUARANTINE_PREFIX", QUARANTINE_PREFIX)
    parts.function.add_environment("MEDFN_STATUS_TABLE", storage.status_table.table_name)
    parts.function.add_environment("MEDFN_MAX_ATTEMPTS", str(MAX_RECEIVES))
    grant_pipeline_access(parts.role, name, storage)
    return queue


def grant_pipeline_access(role: iam.Role, function: str, storage: Storage) -> None:
    """Read its own uploads, quarantine them, write results and status: named actions only."""
    uploads, results = storage.uploads, storage.results
    own, quarantine, written = (
        f"{upload_prefix(function)}*",
        f"{QUARANTINE_PREFIX}{upload_prefix(function)}*",
        f"{RESULTS_PREFIX}{upload_prefix(function)}*",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:PutObjectTagging"],
            resources=[uploads.arn_for_objects(own)],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[uploads.arn_for_objects(quarantine), results.arn_for_objects(written)]
        )
    )
    acknowledge_prefix(
        role, uploads, own, "reads, tags and (after quarantining) deletes only the scans uploaded for this function"
    )
    acknowledge_prefix(
        role, uploads, quarantine, "quarantines unreadable scans of this function only, with their reason"
    )
    acknowledge_prefix(role, results, written, "writes the result documents of this function's scans only")
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[storage.status_table.table_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(actions=["kms:Encrypt", "kms:GenerateDataKey"], resources=[storage.key.key_arn])
    )


def _id(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))

"""The scan pipeline: upload bucket -> S3 ObjectCreated -> SQS (with a DLQ) -> image function.

Each function that takes uploads listens on its own key prefix (`<function>/`) through its
own queue, so two image functions never compete for the same scan. A scan whose processing
keeps failing is retried `MAX_RECEIVES` times, then parked in the dead-letter queue.

The role of an image function is granted exactly the calls `medfn.pipeline` makes, on the
prefixes it makes them on (tests/infra/test_permissions.py lists each call with its place in
src/ and checks the synthesized policies allow it):

- `S3Storage.fetch`: GetObject with the event's VersionId (s3:GetObjectVersion) under `<fn>/`,
  and for an upload slot's object ListObjectVersions (s3:ListBucketVersions, prefix `<fn>/`)
- `S3Storage.write_result`: PutObject under `results/<fn>/` in the results bucket
- `S3Storage.quarantine` (move mode): CopyObject of that version to `quarantine/<fn>/` with
  new tags (s3:GetObjectVersion on the source; s3:PutObject and s3:PutObjectTagging on the copy)
- `S3Storage.release`: DeleteObject of that version (s3:DeleteObjectVersion) under `<fn>/`
- `DynamoStatusTable`: GetItem, PutItem, UpdateItem on the status table
- KMS through S3 and DynamoDB only (kms:ViaService); the queue key through SQS only.
"""

from __future__ import annotations

import jsii
from aws_cdk import Aws, Duration, Names
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from medfn_infra.acknowledgements import REASONS, acknowledge_prefix
from medfn_infra.functions import FunctionParts, secure_queue
from medfn_infra.project import DeployedFunction
from medfn_infra.storage import Storage, grant_key

MAX_RECEIVES = 3  # = MEDFN_MAX_ATTEMPTS: the pipeline writes its error record on the last one
RESULTS_PREFIX = "results/"
QUARANTINE_PREFIX = "quarantine/"
# MEDFN_QUARANTINE_MODE: "move" copies a poison scan under quarantine/ and deletes the
# original version; "tag" would tag it in place (and need the tagging grants below instead).
QUARANTINE_MODE = "move"
# What each mode does to the scan itself, beside reading it (medfn.pipeline.s3_storage).
SCAN_ACTIONS = {
    "move": ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"],
    "tag": [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
    ],
}
# What Lambda's event source mapping calls on the queue with the function's role.
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]


def upload_prefix(function: str) -> str:
    return f"{function}/"


@jsii.implements(s3.IBucketNotificationDestination)
class UploadQueue:
    """S3 -> SQS like aws_s3_notifications.SqsDestination, but S3's rights on the queue and its
    key are conditioned on this account and this bucket (aws:SourceAccount, aws:SourceArn),
    and on the key they are the two calls S3 makes, not the CDK default's wildcards."""

    def __init__(self, queue: sqs.Queue, storage: Storage) -> None:
        self.queue, self.storage = queue, storage

    def bind(self, scope: Construct, bucket: s3.IBucket) -> s3.BucketNotificationDestinationConfig:
        source = {
            "ArnLike": {"aws:SourceArn": self.storage.uploads.bucket_arn},
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
        }
        s3_service = iam.ServicePrincipal("s3.amazonaws.com")
        added = self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[s3_service],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions=source,
            )
        )
        self.storage.queue_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[s3_service],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions=source,
            ),
            True,  # allow_no_op: one statement serves every upload queue
        )
        assert added.policy_dependable is not None
        return s3.BucketNotificationDestinationConfig(
            arn=self.queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[added.policy_dependable],
        )


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
        s3.EventType.OBJECT_CREATED, UploadQueue(queue, storage), s3.NotificationKeyFilter(prefix=upload_prefix(name))
    )
    # the mapping SqsEventSource would make (same id, so a deployed mapping is kept), with grants of our own
    parts.alias.add_event_source_mapping(
        f"SqsEventSource:{Names.node_unique_id(queue.node)}",
        event_source_arn=queue.queue_arn,
        batch_size=1,
        report_batch_item_failures=True,
    )
    parts.role.add_to_policy(iam.PolicyStatement(actions=CONSUME, resources=[queue.queue_arn]))
    grant_key(parts.role, storage.queue_key, ["kms:Decrypt"], via="sqs")
    parts.function.add_environment("MEDFN_RESULTS_BUCKET", storage.results.bucket_name)
    parts.function.add_environment("MEDFN_RESULTS_PREFIX", RESULTS_PREFIX)
    parts.function.add_environment("MEDFN_QUARANTINE_PREFIX", QUARANTINE_PREFIX)
    parts.function.add_environment("MEDFN_QUARANTINE_MODE", QUARANTINE_MODE)
    parts.function.add_environment("MEDFN_STATUS_TABLE", storage.status_table.table_name)
    parts.function.add_environment("MEDFN_MAX_ATTEMPTS", str(MAX_RECEIVES))
    grant_pipeline_access(parts.role, name, storage)
    parts.upload_queue, parts.upload_dead_letters = queue, dead_letters
    return queue


def grant_pipeline_access(role: iam.Role, function: str, storage: Storage, mode: str = QUARANTINE_MODE) -> None:
    """Read its own uploads, quarantine them, write results and status: named actions only."""
    uploads, results = storage.uploads, storage.results
    own, quarantine, written = (
        f"{upload_prefix(function)}*",
        f"{QUARANTINE_PREFIX}{upload_prefix(function)}*",
        f"{RESULTS_PREFIX}{upload_prefix(function)}*",
    )
    subject = f"role of function {function}"
    role.add_to_policy(iam.PolicyStatement(actions=SCAN_ACTIONS[mode], resources=[uploads.arn_for_objects(own)]))
    acknowledge_prefix(role, uploads, own, REASONS["own_uploads"], subject)
    # S3Storage.fetch lists a slot upload's versions (one scan per slot), under its own prefix only
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucketVersions"],
            resources=[uploads.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [own]}},
        )
    )
    if mode == "move":
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:PutObjectTagging"], resources=[uploads.arn_for_objects(quarantine)]
            )
        )
        acknowledge_prefix(role, uploads, quarantine, REASONS["own_quarantine"], subject)
    role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[results.arn_for_objects(written)]))
    acknowledge_prefix(role, results, written, REASONS["own_results"], subject)
    # uploads and results share the data key: S3 decrypts what it reads and makes data keys for what it writes
    grant_key(role, storage.data_key, ["kms:Decrypt", "kms:GenerateDataKey"], via="s3")
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[storage.status_table.table_arn],
        )
    )
    grant_key(
        role,
        storage.data_key,
        ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
        via="dynamodb",
    )


def _id(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))

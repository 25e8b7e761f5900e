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
- `DynamoStatusTable`: GetItem, PutItem, UpdateItem on the status table, and Query (the
  earlier records of an object key: one scan per upload slot)
- KMS through S3 and DynamoDB only (kms:ViaService); the queue key through SQS only.

A function with `[series]` in its function.toml (DICOM instances assembled into series) gets,
besides (`connect_series`): GetItem, PutItem, UpdateItem and Query on the series table, only
on partition keys that start with `<function>/` (dynamodb:LeadingKeys), and SendMessage to its
own upload queue (the stability check: a message delayed by `settle_s`, sent back to it).

PACS on both ends (docs/pacs.md), in AWS:

- STOW-RS in: an upload function with HTTP routes takes `POST .../dicomweb/studies[/{study}]`
  (api.Api routes them) and stores each instance with `S3Sink.put` (medfn.sources.http.upload_sink):
  PutObject under its own `<fn>/` of the upload bucket (`MEDFN_UPLOAD_BUCKET`), whose event comes
  back to it through its queue like any upload; S3 makes a data key for it (the grant above).
- Results out (`connect_destination`, with MEDFN_DICOMWEB_URL set at synth): every upload
  function stores its SEG and SR there by STOW-RS; with MEDFN_DICOMWEB_SECRET_ARN,
  `CredentialSource` reads that one secret (secretsmanager:GetSecretValue on its ARN alone), and
  with MEDFN_DICOMWEB_SECRET_KEY_ARN Secrets Manager decrypts it with that key for the role
  (kms:Decrypt through Secrets Manager, for that secret's encryption context alone).
"""

from __future__ import annotations

import jsii
from aws_cdk import Aws, Duration, Names, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from medfn_infra.acknowledgements import REASONS, acknowledge_prefix
from medfn_infra.functions import FunctionParts, secure_queue
from medfn_infra.project import DeployedFunction
from medfn_infra.settings import Settings
from medfn_infra.storage import RETENTION, Storage, grant_key

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
# What medfn's series assembly calls on the series table (each on its own function's keys only).
SERIES_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
# What Lambda's event source mapping calls on the queue with the function's role.
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
# Results out: medfn.dicomweb.delivery.RetryPolicy's tries and waits (0.5 s, doubled, at most 8 s),
# and the share of the function's timeout a delivery may take, so that a PACS that does not answer
# ends in the retryable error record (docs/pipeline.md), not in a timed-out invocation.
DESTINATION_ATTEMPTS = 4
DESTINATION_WAITS_S = sum(min(0.5 * 2**i, 8.0) for i in range(DESTINATION_ATTEMPTS - 1))
DESTINATION_SHARE = 2 / 3


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


def series_key_prefix(function: str) -> str:
    """Every series table key of `function` starts with this: `<function>/<study>/<series>`."""
    return f"{function}/"


def upload_queue(scope: Construct, deployed: DeployedFunction, storage: Storage) -> tuple[sqs.Queue, sqs.Queue]:
    """The function's upload queue and its dead-letter queue, fed by ObjectCreated under `<fn>/`."""
    name = deployed.name
    dead_letters = secure_queue(scope, f"{_id(name)}UploadDeadLetters", storage, retention_period=Duration.days(14))
    queue = secure_queue(
        scope,
        f"{_id(name)}Uploads",
        storage,
        # AWS's advice for Lambda consumers: at least six times the function's timeout (a GPU worker
        # extends the visibility of what it holds longer, medfn.sources.queue_worker)
        visibility_timeout=Duration.seconds(6 * deployed.config.timeout_s),
        retention_period=Duration.days(4),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVES),
    )
    storage.uploads.add_event_notification(
        s3.EventType.OBJECT_CREATED, UploadQueue(queue, storage), s3.NotificationKeyFilter(prefix=upload_prefix(name))
    )
    return queue, dead_letters


def consumer_environment(deployed: DeployedFunction, storage: Storage, queue: sqs.IQueue) -> dict[str, str]:
    """What medfn.pipeline reads (PipelineSettings, the series worker), wherever the consumer runs."""
    environment = {
        "MEDFN_RESULTS_BUCKET": storage.results.bucket_name,
        "MEDFN_RESULTS_PREFIX": RESULTS_PREFIX,
        "MEDFN_QUARANTINE_PREFIX": QUARANTINE_PREFIX,
        "MEDFN_QUARANTINE_MODE": QUARANTINE_MODE,
        "MEDFN_STATUS_TABLE": storage.status_table.table_name,
        "MEDFN_MAX_ATTEMPTS": str(MAX_RECEIVES),
    }
    # STOW-RS comes through the function's HTTP routes: none, no route (api.Api) and no grant
    if deployed.config.http:
        environment["MEDFN_UPLOAD_BUCKET"] = storage.uploads.bucket_name
    series, table = deployed.config.series, storage.series_table
    if series is not None and table is not None:
        environment |= {
            "MEDFN_SERIES_TABLE": table.table_name,
            "MEDFN_SERIES_SETTLE_S": f"{series.settle_s:g}",
            "MEDFN_SERIES_QUEUE_URL": queue.queue_url,
            "MEDFN_SERIES_RETENTION_DAYS": str(RETENTION["series_records"]),
        }
    return environment


def grant_consumer(
    role: iam.Role, deployed: DeployedFunction, storage: Storage, queue: sqs.IQueue, queue_key_sends: bool = False
) -> None:
    """What a consumer of the upload queue calls, on its own prefixes, tables and queue alone: the
    same for the Lambda function and the GPU worker's task. `queue_key_sends`: a role that no
    dead-letter queue gave kms:GenerateDataKey on the queue key (the task) gets it for the series' checks."""
    role.add_to_policy(iam.PolicyStatement(actions=CONSUME, resources=[queue.queue_arn]))
    grant_key(role, storage.queue_key, ["kms:Decrypt"], via="sqs")
    grant_pipeline_access(role, deployed.name, storage, stow=deployed.config.http)
    if deployed.config.series is not None:
        grant_series(role, deployed.name, storage, queue, queue_key_sends)


def connect_uploads(
    scope: Construct, deployed: DeployedFunction, parts: FunctionParts, storage: Storage, settings: Settings
) -> sqs.Queue:
    queue, dead_letters = upload_queue(scope, deployed, storage)
    # the mapping SqsEventSource would make (same id, so a deployed mapping is kept), with grants of our own
    parts.alias.add_event_source_mapping(
        f"SqsEventSource:{Names.node_unique_id(queue.node)}",
        event_source_arn=queue.queue_arn,
        batch_size=1,
        report_batch_item_failures=True,
    )
    for name, value in consumer_environment(deployed, storage, queue).items():
        parts.function.add_environment(name, value)
    grant_consumer(parts.role, deployed, storage, queue)
    parts.upload_queue, parts.upload_dead_letters = queue, dead_letters
    if deployed.config.series is not None:
        parts.settle_s = deployed.config.series.settle_s
    if settings.dicomweb_url:
        connect_destination(parts, settings)
    return queue


def grant_series(role: iam.Role, function: str, storage: Storage, queue: sqs.IQueue, queue_key_sends: bool) -> None:
    """Series assembly (medfn.studies): records in the series table under `<function>/`, and the
    stability check, a message delayed by `settle_s` sent back to the function's own queue."""
    table = storage.series_table
    assert table is not None
    role.add_to_policy(
        iam.PolicyStatement(
            actions=SERIES_ACTIONS,
            resources=[table.table_arn],
            # every key the request names (item keys, a query's partition) is this function's
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{series_key_prefix(function)}*"]}},
        )
    )
    # the data key through DynamoDB: grant_pipeline_access gave it (the series table shares the key)
    role.add_to_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn]))
    if queue_key_sends:  # a Lambda role has it already, for its dead-letter queue (functions.lambda_function)
        grant_key(role, storage.queue_key, ["kms:GenerateDataKey", "kms:Decrypt"], via="sqs")


def connect_destination(parts: FunctionParts, settings: Settings) -> None:
    """Results out by STOW-RS (medfn.dicomweb.destination_from_env): the URL, the secret's ARN
    (never a credential: the code reads the secret at its first delivery), and a per-try timeout
    that keeps every try and wait within DESTINATION_SHARE of the function's timeout."""
    function, role = parts.function, parts.role
    parts.destination = True
    function.add_environment("MEDFN_DICOMWEB_URL", settings.dicomweb_url)
    function.add_environment("MEDFN_DESTINATION_ATTEMPTS", str(DESTINATION_ATTEMPTS))
    function.add_environment("MEDFN_DESTINATION_TIMEOUT_S", f"{destination_timeout_s(parts.timeout_s):g}")
    secret, key = settings.dicomweb_secret_arn, settings.dicomweb_secret_key_arn
    if not secret:
        return
    region = Stack.of(function).region
    if not Token.is_unresolved(region) and secret.split(":")[3] != region:
        # CredentialSource calls Secrets Manager in the function's own region
        raise ValueError(f"MEDFN_DICOMWEB_SECRET_ARN must be a secret in the stack's region, {region}")
    function.add_environment("MEDFN_DICOMWEB_SECRET", secret)
    role.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret]))
    if key:  # a customer managed key: Secrets Manager decrypts with it for the role, this secret only
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[key],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com",
                        "kms:EncryptionContext:SecretARN": secret,
                    }
                },
            )
        )


def destination_timeout_s(function_timeout_s: int) -> float:
    """Each try's timeout: the tries and the waits between them within the share, 1 s at least."""
    per_try = (function_timeout_s * DESTINATION_SHARE - DESTINATION_WAITS_S) / DESTINATION_ATTEMPTS
    return max(1.0, int(per_try * 10) / 10)


def grant_pipeline_access(
    role: iam.Role, function: str, storage: Storage, mode: str = QUARANTINE_MODE, stow: bool = False
) -> None:
    """Read its own uploads, quarantine them, write results and status: named actions only;
    with `stow`, write the instances its STOW-RS route receives under its own prefix too."""
    uploads, results = storage.uploads, storage.results
    own, quarantine, written = (
        f"{upload_prefix(function)}*",
        f"{QUARANTINE_PREFIX}{upload_prefix(function)}*",
        f"{RESULTS_PREFIX}{upload_prefix(function)}*",
    )
    subject = f"role of function {function}"
    role.add_to_policy(iam.PolicyStatement(actions=SCAN_ACTIONS[mode], resources=[uploads.arn_for_objects(own)]))
    if stow:  # S3Sink.put: put_object of <fn>/<study>/<series>/<sop>.dcm
        role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[uploads.arn_for_objects(own)]))
    acknowledge_prefix(role, uploads, own, REASONS["own_uploads_stow" if stow else "own_uploads"], subject)
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
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
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

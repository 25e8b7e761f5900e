"""Where data rests: the KMS keys, the model, upload and results buckets, the status table,
and the series table (only when a function assembles DICOM series: `[series]` in function.toml).

Three keys, so that a role's decrypt right says what it may read: the model key (the model
bucket: nothing in it concerns a patient), the data key (uploads, results, the status and series
tables, their backups and every log group: anything that may concern a patient), and the queue key
(SQS messages and the alarm topic, which S3, SQS and CloudWatch must be allowed to use, each
on conditions naming this account and the source). Every bucket is KMS-encrypted (with S3
Bucket Keys, so KMS is called per bucket-key, not per object), versioned, TLS-only, closed to
the public, and logs access to a log bucket. How long each thing is kept: `RETENTION`, the
one table docs/deploy.md quotes.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from medfn_infra.acknowledgements import IAM4, IAM5, INLINE, REASONS, ack
from medfn_infra.project import Project
from medfn_infra.settings import Settings

MODEL_PREFIX = "models"  # model_store/<model>/... lands at s3://<model bucket>/models/<model>/...
# How long each kind of data is kept, in days (0: until deleted). The reasons: docs/deploy.md.
RETENTION = {
    "uploads": 30,  # scans may hold PHI: only as long as the pipeline and a redrive need them
    "uploads_noncurrent": 1,  # a quarantined original released, or an upload overwritten
    "results_noncurrent": 90,  # an overwritten or deleted result can be restored for a quarter
    "models_noncurrent": 30,  # the previous model files, to roll back a bad deploy by hand
    "access_logs": 365,
    "access_logs_noncurrent": 30,
    "logs": 365,  # every CloudWatch log group
    "table_backups": 35,  # daily AWS Backup copies of the tables (point-in-time recovery: 35 too)
    # series records (a series' state and its instances) expire this long after their last
    # write (TTL on `expires_at`, set by the code from MEDFN_SERIES_RETENTION_DAYS): as long as
    # the uploads they index, so a redriven instance still finds its series
    "series_records": 30,
}
LOG_RETENTION = logs.RetentionDays.ONE_YEAR  # = RETENTION["logs"]
SERIES_TTL_ATTRIBUTE = "expires_at"  # epoch seconds; DynamoDB deletes the item after it (within days)
# What the model bucket's policy denies to every principal but the deploy-time copy.
MODEL_WRITES = ["s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject"]


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, project: Project, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        # "Key" was the only data key before models got their own: its id keeps the existing key
        self.data_key = kms.Key(
            self, "Key", enable_key_rotation=True, description="medfn: patient data (uploads, results, table, logs)"
        )
        self.model_key = kms.Key(self, "ModelKey", enable_key_rotation=True, description="medfn: model artifacts")
        # Queues get their own key: S3 must be allowed to use the key of the queue it notifies,
        # for the upload bucket only, and that grant on the bucket's own key would be circular.
        self.queue_key = kms.Key(self, "QueueKey", enable_key_rotation=True, description="medfn: queues and alarms")
        self._let_cloudwatch_logs_use_key()
        # Server access logs may only go to an SSE-S3 bucket (S3 cannot write them with KMS).
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=_days("access_logs"), noncurrent_version_expiration=_days("access_logs_noncurrent")
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.models = self._bucket("Models", "models/", self.model_key, noncurrent="models_noncurrent")
        self.uploads = self._bucket(
            "Uploads", "uploads/", self.data_key, noncurrent="uploads_noncurrent", expire_days=RETENTION["uploads"]
        )
        self.results = self._bucket(
            "Results",
            "results/",
            self.data_key,
            noncurrent="results_noncurrent",
            expire_days=settings.results_retention_days or None,
        )
        self.status_table = dynamodb.Table(
            self,
            "StatusTable",
            # the keys the pipeline's status records use (medfn.pipeline.dynamo_status)
            partition_key=dynamodb.Attribute(name="object_uri", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="object_version", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # nothing at rest but storage
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.data_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # one table for every series function: its keys start with "<function>/", and each
        # function's role may touch only its own (dynamodb:LeadingKeys, pipeline.connect_series)
        self.series_table = (
            self._series_table() if any(f.config.series is not None for f in project.functions) else None
        )
        self.backup_plan = self._back_up_tables()
        # the deploy-time copy logs to a group of ours: retention and encryption like every other
        self.model_deployment_logs = logs.LogGroup(
            self, "ModelStoreLogs", encryption_key=self.data_key, retention=LOG_RETENTION
        )
        self.model_deployment = s3deploy.BucketDeployment(
            self,
            "ModelStore",
            sources=[
                s3deploy.Source.asset(str(project.model_store), exclude=["build", "build/*", "*.md", "__pycache__"])
            ],
            destination_bucket=self.models,
            destination_key_prefix=MODEL_PREFIX,
            memory_limit=1024,  # model files are megabytes; the default 128 MiB copies them slowly
            log_group=self.model_deployment_logs,
            # named, not left to the bucket default: a stack deployed when models shared the data
            # key sees these settings change, and the copy re-encrypts every model with the model key
            server_side_encryption=s3deploy.ServerSideEncryption.AWS_KMS,
            server_side_encryption_aws_kms_key_id=self.model_key.key_id,
        )
        self._only_the_deployment_writes_models()

    def _bucket(
        self, construct_id: str, log_prefix: str, key: kms.IKey, *, noncurrent: str, expire_days: int | None = None
    ) -> s3.Bucket:
        rules = [
            s3.LifecycleRule(
                id="noncurrent",
                noncurrent_version_expiration=_days(noncurrent),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
            s3.LifecycleRule(id="delete-markers", expired_object_delete_marker=True),
        ]
        if expire_days:
            rules.append(s3.LifecycleRule(id="expire", expiration=Duration.days(expire_days)))
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _only_the_deployment_writes_models(self) -> None:
        """Functions verify a model against the sha256 in their environment; the bucket, for its
        part, takes writes from the deploy-time copy alone, whoever else holds s3:PutObject."""
        writer = self.model_deployment.handler_role
        self.models.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheModelDeploymentWrites",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=MODEL_WRITES,
                resources=[self.models.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": writer.role_arn}},
            )
        )

    def _series_table(self) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "SeriesTable",
            # the keys medfn.studies' series records use: "<function>/<StudyInstanceUID>/<SeriesInstanceUID>",
            # and "series" (the series record) or "instance#<SOPInstanceUID>" (one per instance)
            partition_key=dynamodb.Attribute(name="series", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="item", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.data_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=SERIES_TTL_ATTRIBUTE,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _back_up_tables(self) -> backup.BackupPlan:
        """Daily AWS Backup copies beside point-in-time recovery: a copy outside the table's own
        lifecycle, which survives a table deleted by mistake (PITR does not)."""
        vault = backup.BackupVault(
            self, "BackupVault", encryption_key=self.data_key, removal_policy=RemovalPolicy.RETAIN
        )
        plan = backup.BackupPlan(
            self,
            "Backup",
            backup_vault=vault,
            backup_plan_rules=[
                backup.BackupPlanRule(
                    rule_name="daily",
                    schedule_expression=events.Schedule.cron(hour="4", minute="0"),
                    delete_after=_days("table_backups"),
                )
            ],
        )
        status = plan.add_selection(
            "StatusTable", resources=[backup.BackupResource.from_dynamo_db_table(self.status_table)]
        )
        if self.series_table is not None:  # a selection of its own (the status table's is kept as deployed), same role
            plan.add_selection(
                "SeriesTable",
                resources=[backup.BackupResource.from_dynamo_db_table(self.series_table)],
                role=status.node.find_child("Role"),  # type: ignore[arg-type]
                disable_default_backup_policy=True,  # the role has it already
            )
        return plan

    def _let_cloudwatch_logs_use_key(self) -> None:
        """Log groups encrypted with the data key need CloudWatch Logs in the key policy."""
        region_logs = f"logs.{Aws.REGION}.amazonaws.com"
        self.data_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(region_logs)],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                ],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Stack.of(self).account}:*"
                        )
                    }
                },
            )
        )

    def model_prefix(self, model: str) -> str:
        return f"{MODEL_PREFIX}/{model}"


def grant_key(role: iam.IRole, key: kms.IKey, actions: list[str], via: str) -> None:
    """KMS rights used only through `via` (s3, sqs, dynamodb): S3 decrypting an object for
    the role, never the role calling KMS itself with a data key it copied."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=actions,
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"{via}.{Aws.REGION}.amazonaws.com"}},
        )
    )


def _days(name: str) -> Duration:
    return Duration.days(RETENTION[name])


def acknowledge_storage(storage: Storage) -> None:
    for bucket in (storage.access_logs, storage.models, storage.uploads, storage.results):
        ack(bucket, "HIPAA.Security-S3BucketReplicationEnabled", REASONS["replication"], f"bucket {bucket.node.id}")
    ack(
        storage.access_logs,
        "HIPAA.Security-S3DefaultEncryptionKMS",
        REASONS["access_logs_sse_s3"],
        "bucket AccessLogs",
    )
    # the status table's selection made the role; the series table's selection shares it
    role = storage.backup_plan.node.find_child("StatusTable").node.find_child("Role")
    ack(
        role,
        f"{IAM4}[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
        REASONS["backup_role"],
        "the tables' backup selection role",
    )


def acknowledge_model_deployment(stack: Stack, storage: Storage) -> None:
    """CDK's BucketDeployment helper, a singleton Lambda in the stack itself."""
    models = stack.get_logical_id(storage.models.node.default_child)  # type: ignore[arg-type]
    basic = f"{IAM4}[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
    for child in stack.node.children:
        if not child.node.id.startswith("Custom::CDKBucketDeployment"):
            continue
        subject = "CDK's BucketDeployment helper"
        ack(child, basic, REASONS["cdk_helper_logs"], subject)
        ack(child, INLINE, REASONS["inline_policy"], f"role of {subject}")
        ack(child, "AwsSolutions-L1", REASONS["cdk_helper_runtime"], subject)
        ack(child, "HIPAA.Security-LambdaConcurrency", REASONS["cdk_helper_concurrency"], subject)
        ack(child, "HIPAA.Security-LambdaDLQ", REASONS["cdk_helper_dlq"], subject)
        ack(child, "HIPAA.Security-LambdaInsideVPC", REASONS["cdk_helper_vpc"], subject)
        for detail in (
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
            f"Resource::<{models}.Arn>/*",
            *(f"Action::{a}" for a in ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*",
                                       "s3:Abort*", "kms:GenerateDataKey*", "kms:ReEncrypt*")),
        ):  # fmt: skip
            ack(child, f"{IAM5}[{detail}]", REASONS["model_sync"], f"role of {subject}")

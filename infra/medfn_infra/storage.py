"""Where data rests: one KMS key, the model, upload and results buckets, the status table.

Every bucket is KMS-encrypted (with S3 Bucket Keys, so KMS is called per bucket-key, not per
object), versioned, TLS-only, closed to the public, and logs access to a log bucket.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from medfn_infra.acknowledgements import ack
from medfn_infra.project import Project

MODEL_PREFIX = "models"  # model_store/<model>/... lands at s3://<model bucket>/models/<model>/...


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, project: Project) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="medfn: buckets, table, logs")
        # Queues get their own key: S3 must be allowed to use the key of the queue it notifies,
        # for the upload bucket only, and that grant on the bucket's own key would be circular.
        self.queue_key = kms.Key(self, "QueueKey", enable_key_rotation=True, description="medfn: queues")
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
                s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.models = self._bucket("Models", "models/")
        # Scans may hold PHI: keep uploads only as long as the pipeline needs them.
        self.uploads = self._bucket("Uploads", "uploads/", expire_days=30)
        self.results = self._bucket("Results", "results/")
        self.status_table = dynamodb.Table(
            self,
            "StatusTable",
            # the keys the pipeline's status records use (medfn.pipeline.dynamo_status)
            partition_key=dynamodb.Attribute(name="object_uri", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="object_version", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # nothing at rest but storage
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
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
        )

    def _bucket(self, construct_id: str, log_prefix: str, expire_days: int | None = None) -> s3.Bucket:
        rules = [s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))]
        if expire_days:
            rules.append(s3.LifecycleRule(expiration=Duration.days(expire_days)))
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _let_cloudwatch_logs_use_key(self) -> None:
        """Log groups encrypted with the key need CloudWatch Logs in the key policy."""
        region_logs = f"logs.{Aws.REGION}.amazonaws.com"
        self.key.add_to_resource_policy(
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


def acknowledge_storage(storage: Storage) -> None:
    for bucket in (storage.access_logs, storage.models, storage.uploads, storage.results):
        ack(
            bucket,
            "HIPAA.Security-S3BucketReplicationEnabled",
            f"bucket {bucket.node.id}: versioned with retained noncurrent versions in one region; "
            "cross-region replication doubles storage cost and is a per-deployment DR decision (docs/deploy.md)",
        )
    ack(
        storage.access_logs,
        "HIPAA.Security-S3DefaultEncryptionKMS",
        "bucket AccessLogs is the server-access-log target, and S3 delivers access logs only to buckets "
        "with SSE-S3 default encryption (SSE-KMS targets are unsupported); it holds no scans or results",
    )
    ack(
        storage.status_table,
        "HIPAA.Security-DynamoDBInBackupPlan",
        "the status table has point-in-time recovery (35 days of continuous backups); an AWS Backup "
        "plan would add a second, billed copy of records that are rebuilt from the results bucket",
    )

"""The one stack: storage, a function per discovered function.toml, the pipeline, the API, alarms.

Lambda serves CPU functions; `accelerator = "gpu"` functions get the GPU service, which exists
only when at least one function asks for it.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, CfnResource, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from medfn_infra.acknowledgements import IAM4, INLINE, REASONS, ack, acknowledge_prefix
from medfn_infra.alarms import Alarms
from medfn_infra.api import Api, IntegrationFor, acknowledge_api, lambda_routes
from medfn_infra.functions import (
    FunctionParts,
    acknowledge_function,
    catalog_json,
    lambda_function,
    log_group,
    model_function,
)
from medfn_infra.gpu_service import GpuService, acknowledge_gpu_service
from medfn_infra.gpu_workers import GPU_START_S
from medfn_infra.pipeline import connect_uploads, upload_prefix
from medfn_infra.project import Project
from medfn_infra.settings import Settings
from medfn_infra.storage import MODEL_PREFIX, Storage, acknowledge_model_deployment, acknowledge_storage, grant_key

# Lambda functions CDK itself adds to the stack (construct id prefixes), whose logs would
# otherwise go to a group Lambda creates on first use: no retention, no key.
CDK_HELPERS = ("BucketNotificationsHandler", "Custom::VpcRestrictDefaultSGCustomResourceProvider")
HEALTH_CONCURRENCY = 2  # the readiness function's reserved environments


class MedfnStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, project: Project, settings: Settings, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(scope, construct_id, **kwargs)
        storage = Storage(self, "Storage", project, settings)
        functions: dict[str, FunctionParts] = {}
        for deployed in project.lambda_functions:
            parts = functions[deployed.name] = model_function(self, deployed, storage, settings.snapstart)
            # a new model version must be in the bucket before the version snapshot loads it
            parts.function.node.add_dependency(storage.model_deployment)
            if deployed.config.uploads:
                connect_uploads(self, deployed, parts, storage, settings)
        platform = self._platform(project, storage)
        health = self._health(project, storage)
        routes: dict[str, IntegrationFor] = {name: lambda_routes(parts.alias) for name, parts in functions.items()}
        gpu = (
            GpuService(self, "GpuService", project.gpu_functions, storage, settings) if project.gpu_functions else None
        )
        if gpu:
            routes.update({name: gpu.integration_for(name) for name in gpu.functions})
            acknowledge_gpu_service(gpu)
        api = Api(self, "Api", project, storage, settings, routes, platform.alias, health.alias)
        alarms = Alarms(self, "Alarms", storage, settings)
        for name, parts in {**functions, "platform": platform, "health": health}.items():
            acknowledge_function(name, parts)
            alarms.watch_function(name, parts)
        for name, worker in (gpu.workers if gpu else {}).items():
            config = worker.deployed.config
            settle_s = config.series.settle_s if config.series else 0
            alarms.watch_upload_queue(name, worker.queue, worker.dead_letters, config.timeout_s, settle_s, GPU_START_S)
        acknowledge_storage(storage)
        acknowledge_api(api)
        acknowledge_model_deployment(self, storage)
        self._log_cdk_helpers(storage)
        CfnOutput(self, "ModelBucket", value=storage.models.bucket_name)
        CfnOutput(self, "UploadBucket", value=storage.uploads.bucket_name)
        CfnOutput(self, "ResultsBucket", value=storage.results.bucket_name)
        CfnOutput(self, "StatusTable", value=storage.status_table.table_name)
        if storage.series_table is not None:
            CfnOutput(self, "SeriesTable", value=storage.series_table.table_name)
        CfnOutput(self, "AlarmTopic", value=alarms.topic.topic_arn, description="subscribe to get the alarms")
        queues = {name: (p.upload_queue, p.upload_dead_letters) for name, p in functions.items()}
        queues |= {name: (w.queue, w.dead_letters) for name, w in (gpu.workers if gpu else {}).items()}
        for name, (queue, dead_letters) in queues.items():
            if queue is not None and dead_letters is not None:
                key = "".join(p.capitalize() for p in name.split("_"))
                CfnOutput(self, f"{key}UploadQueueArn", value=queue.queue_arn)
                CfnOutput(self, f"{key}UploadDeadLettersUrl", value=dead_letters.queue_url)
                CfnOutput(self, f"{key}UploadDeadLettersArn", value=dead_letters.queue_arn)

    def _platform(self, project: Project, storage: Storage) -> FunctionParts:
        prefixes = {f.model.name: upload_prefix(f.name) for f in project.upload_functions}
        parts = lambda_function(
            self,
            "PlatformFunction",
            storage,
            code=lambda_.Code.from_asset(str(project.platform_code)),
            handler="handler.handler",
            architecture=lambda_.Architecture.ARM_64,
            memory_mb=256,
            timeout_s=10,
            reserved_concurrency=10,
            environment={
                "MEDFN_MODEL_STORE": storage.models.s3_url_for_object(MODEL_PREFIX),
                "MEDFN_CATALOG": catalog_json(project.functions),
                "MEDFN_UPLOAD_BUCKET": storage.uploads.bucket_name,
                "MEDFN_UPLOAD_PREFIXES": json.dumps(prefixes, separators=(",", ":")),
            },
            description="medfn platform: catalog, upload slots, server metadata",
            # it imports only boto3: a snapshot would cost more to cache than it saves
            snap_start=False,
        )
        read_catalog(parts.role, project, storage)
        # a presigned POST carries the signer's rights: this role may write new scans under each
        # prefix, and S3 makes a data key for each (never a decrypt: it reads no scan)
        upload_keys = [f"{p}*" for p in prefixes.values()]
        if upload_keys:
            parts.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject"], resources=[storage.uploads.arn_for_objects(k) for k in upload_keys]
                )
            )
            for key in upload_keys:
                acknowledge_prefix(parts.role, storage.uploads, key, REASONS["upload_slots"], "role of the platform")
            grant_key(parts.role, storage.data_key, ["kms:GenerateDataKey"], via="s3")
        return parts

    def _health(self, project: Project, storage: Storage) -> FunctionParts:
        """GET /v2/health/ready, which anyone may call: a function of its own, so a flood of
        probes meets its two environments and cannot take the platform's from uploads."""
        parts = lambda_function(
            self,
            "HealthFunction",
            storage,
            code=lambda_.Code.from_asset(str(project.platform_code)),
            handler="handler.ready",
            architecture=lambda_.Architecture.ARM_64,
            memory_mb=128,
            timeout_s=5,
            reserved_concurrency=HEALTH_CONCURRENCY,
            environment={
                "MEDFN_MODEL_STORE": storage.models.s3_url_for_object(MODEL_PREFIX),
                "MEDFN_CATALOG": catalog_json(project.functions),
            },
            description="medfn readiness: is every deployed model's artifact in the model bucket",
            snap_start=False,
        )
        read_catalog(parts.role, project, storage)
        return parts

    def _log_cdk_helpers(self, storage: Storage) -> None:
        """CDK's own deploy-time Lambdas log to groups of ours (retention, the data key)."""
        basic = f"{IAM4}[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
        for child in self.node.children:
            helper = next((h for h in CDK_HELPERS if child.node.id.startswith(h)), None)
            if helper is None:
                continue
            function = next(
                c
                for c in child.node.find_all()
                if isinstance(c, CfnResource) and c.cfn_resource_type == "AWS::Lambda::Function"
            )
            logs = log_group(self, f"{_alnum(helper)}Logs", storage)
            function.add_property_override("LoggingConfig.LogGroup", logs.log_group_name)
            if helper == "BucketNotificationsHandler":
                ack(child, basic, REASONS["cdk_helper_logs"], "CDK's bucket-notifications helper")
        notifications = storage.uploads.node.try_find_child("Notifications")
        if notifications is not None:
            ack(notifications, INLINE, REASONS["inline_policy"], "the upload bucket's notification handler role")


def read_catalog(role: iam.Role, project: Project, storage: Storage) -> None:
    """The catalog and readiness check HEAD each served artifact (HeadObject is authorised by
    GetObject, and reads no object data, so no KMS right)."""
    keys = [f"{MODEL_PREFIX}/{f.model.name}/*" for f in project.functions]
    role.add_to_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[storage.models.arn_for_objects(k) for k in keys])
    )
    for key in keys:
        acknowledge_prefix(role, storage.models, key, REASONS["catalog"], f"role of {role.node.id}")


def _alnum(text: str) -> str:
    return "".join(c for c in text if c.isalnum())

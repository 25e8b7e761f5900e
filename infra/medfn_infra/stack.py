"""The one stack: storage, a function per discovered function.toml, the pipeline, the API.

Lambda serves CPU functions; `accelerator = "gpu"` functions get the GPU service, which exists
only when at least one function asks for it.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from medfn_infra.acknowledgements import INLINE_POLICY, ack, acknowledge_prefix
from medfn_infra.api import Api, IntegrationFor, acknowledge_api, lambda_routes
from medfn_infra.functions import (
    FunctionParts,
    acknowledge_function,
    catalog_json,
    lambda_function,
    model_function,
)
from medfn_infra.gpu_service import GpuService, acknowledge_gpu_service
from medfn_infra.pipeline import connect_uploads, upload_prefix
from medfn_infra.project import Project
from medfn_infra.storage import MODEL_PREFIX, Storage, acknowledge_storage


class MedfnStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, project: Project, snapstart: bool = True, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(scope, construct_id, **kwargs)
        storage = Storage(self, "Storage", project)
        functions: dict[str, FunctionParts] = {}
        for deployed in project.lambda_functions:
            parts = functions[deployed.name] = model_function(self, deployed, storage, snapstart)
            # a new model version must be in the bucket before the version snapshot loads it
            parts.function.node.add_dependency(storage.model_deployment)
            if deployed.config.uploads:
                connect_uploads(self, deployed, parts, storage)
        platform = self._platform(project, storage)
        routes: dict[str, IntegrationFor] = {name: lambda_routes(parts.alias) for name, parts in functions.items()}
        gpu = GpuService(self, "GpuService", project.gpu_functions, storage) if project.gpu_functions else None
        if gpu:
            routes.update({name: gpu.integration_for(name) for name in gpu.functions})
            acknowledge_gpu_service(gpu)
        api = Api(self, "Api", project, storage, routes, platform.alias)
        for name, parts in {**functions, "platform": platform}.items():
            acknowledge_function(name, parts)
        acknowledge_storage(storage)
        acknowledge_api(api, http_backend=gpu is not None)
        acknowledge_cdk_helpers(self, storage)
        CfnOutput(self, "ModelBucket", value=storage.models.bucket_name)
        CfnOutput(self, "UploadBucket", value=storage.uploads.bucket_name)
        CfnOutput(self, "ResultsBucket", value=storage.results.bucket_name)

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
            description="medfn platform: catalog, upload slots, server health",
            # it imports only boto3: a snapshot would cost more to cache than it saves
            snap_start=False,
        )
        role = parts.role
        # the catalog checks each served artifact exists (HeadObject is authorised by GetObject)
        model_keys = [f"{MODEL_PREFIX}/{f.model.name}/*" for f in project.functions]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[storage.models.arn_for_objects(k) for k in model_keys]
            )
        )
        for key in model_keys:
            acknowledge_prefix(
                role, storage.models, key, "the catalog checks that each deployed model's artifact is present"
            )
        # a presigned PUT carries the signer's rights: this role may write new scans under each prefix
        upload_keys = [f"{p}*" for p in prefixes.values()]
        if upload_keys:
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject"], resources=[storage.uploads.arn_for_objects(k) for k in upload_keys]
                )
            )
            for key in upload_keys:
                acknowledge_prefix(
                    role,
                    storage.uploads,
                    key,
                    "presigned upload slots write new scans only under the prefix an image function listens on",
                )
            role.add_to_policy(iam.PolicyStatement(actions=["kms:GenerateDataKey"], resources=[storage.key.key_arn]))
        return parts


# Here, not in storage.py: CDK adds these helpers to the stack itself, the notification one
# only once the pipeline connects an upload queue.
def acknowledge_cdk_helpers(stack: Stack, storage: Storage) -> None:
    """The Lambda-backed helpers CDK itself adds: BucketDeployment and bucket notifications."""
    basic = "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
    models = Stack.of(storage.models).get_logical_id(storage.models.node.default_child)  # type: ignore[arg-type]
    for child in stack.node.children:
        if child.node.id.startswith("Custom::CDKBucketDeployment"):
            why = "CDK's BucketDeployment helper (runs only during deploys to copy model_store/ into the model bucket)"
            for rule, reason in (
                (basic, "it uses the AWS-maintained log-writing policy"),
                ("HIPAA.Security-IAMNoInlinePolicy", INLINE_POLICY),
                ("AwsSolutions-L1", "its runtime is chosen by aws-cdk-lib, upgraded with it"),
                ("HIPAA.Security-LambdaConcurrency", "is invoked only by CloudFormation, once per deploy"),
                ("HIPAA.Security-LambdaDLQ", "is invoked synchronously by CloudFormation, which reports failures"),
                ("HIPAA.Security-LambdaInsideVPC", "talks only to S3"),
                ("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]",
                 "reads the asset zip of model_store/ from the CDK bootstrap bucket"),
                (f"AwsSolutions-IAM5[Resource::<{models}.Arn>/*]", "syncs the model bucket, pruning removed models"),
                *[(f"AwsSolutions-IAM5[Action::{a}]", "gets CDK's standard bucket read/write grant for the sync")
                  for a in ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*",
                            "kms:GenerateDataKey*", "kms:ReEncrypt*")],
            ):  # fmt: skip
                ack(child, rule, f"{why}: {reason}")
        elif child.node.id.startswith("BucketNotificationsHandler"):
            why = "CDK's bucket-notifications helper (runs only during deploys to set the upload bucket's events)"
            ack(child, basic, f"{why} uses the AWS-maintained log-writing policy")
            ack(child, "AwsSolutions-IAM5[Resource::*]", f"{why} needs s3:PutBucketNotification, which CDK grants on *")
    notifications = storage.uploads.node.try_find_child("Notifications")
    if notifications is not None:
        ack(
            notifications,
            "HIPAA.Security-IAMNoInlinePolicy",
            f"the upload bucket's notification handler policy: {INLINE_POLICY}",
        )

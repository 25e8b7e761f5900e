"""The cdk-nag findings this stack accepts: each names the rule, the resource, and why.

Acknowledgements sit on the narrowest construct that holds the finding (a role, a
function, the stage). Grants of an object-key prefix are acknowledged where they are made
(`acknowledge_prefix`), so the permission and its justification stay side by side.
Anything not acknowledged fails `medfn synth`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

if TYPE_CHECKING:
    from medfn_infra.api import Api
    from medfn_infra.functions import FunctionParts
    from medfn_infra.gpu_service import GpuService
    from medfn_infra.storage import Storage

NO_VPC = (
    "reaches only AWS service APIs (S3, SQS, DynamoDB, CloudWatch, X-Ray) over TLS with IAM "
    "credentials and holds no private network resources; a VPC would need NAT or interface "
    "endpoints, a fixed hourly cost that a pay-per-call service must not carry at rest"
)
INLINE_POLICY = (
    "the inline policy belongs to this one role alone and is created and deleted with it; "
    "a customer-managed policy would be attached to exactly the same single role"
)
PYTHON_312 = (
    "pinned to python3.12 on purpose: `medfn package` installs cp312 manylinux wheels "
    "(onnxruntime, numpy, pydantic-core) that load only under that interpreter"
)
XRAY = "Resource * is X-Ray's PutTraceSegments/PutTelemetryRecords, which take no resource-level permissions"


def ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_prefix(role: IConstruct, bucket: s3.IBucket, pattern: str, reason: str) -> None:
    """An IAM5 finding for `arn:...:bucket/<pattern>`, as cdk-nag spells it: `<LogicalId.Arn>/...`."""
    logical_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
    ack(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{pattern}]", f"{reason}: objects under {pattern} only")


def acknowledge_function(name: str, parts: FunctionParts) -> None:
    ack(parts.function, "HIPAA.Security-LambdaInsideVPC", f"function {name} {NO_VPC}")
    ack(parts.function, "AwsSolutions-L1", f"function {name} is {PYTHON_312}")
    ack(parts.role, "HIPAA.Security-IAMNoInlinePolicy", f"role of function {name}: {INLINE_POLICY}")
    ack(parts.role, "AwsSolutions-IAM5[Resource::*]", f"role of function {name}: {XRAY}")


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


def acknowledge_api(api: Api, http_backend: bool = False) -> None:
    rest_api, stage = api.rest_api, api.rest_api.deployment_stage
    for rule, reason in (
        ("AwsSolutions-APIG4", "callers are identified by API keys tied to usage plans (the pay-per-call "
         "contract); deployments that also need end-user identity add an authorizer in front"),
        ("AwsSolutions-COG4", "no Cognito user pool: consumers are server-side integrations holding API keys, "
         "not end users signing in"),
    ):  # fmt: skip
        ack(rest_api, rule, f"REST API methods: {reason}")
    ack(stage, "AwsSolutions-APIG3", "stage prod: WAF costs a monthly fee per web ACL and rule at rest; request size and "
        "rate are bounded by usage-plan throttles, API Gateway's 10 MB cap and each function's max_body_bytes")  # fmt: skip
    ack(stage, "HIPAA.Security-APIGWCacheEnabledAndEncrypted", "stage prod: predictions are per request and may "
        "concern a patient; caching them would keep PHI outside the encrypted stores and bill hourly at rest")  # fmt: skip
    if http_backend:
        ack(stage, "HIPAA.Security-APIGWSSLEnabled", "stage prod: client certificates prove API Gateway's identity to "
            "public HTTP backends; the GPU services have no public address and are reached only through the VPC link "
            "to an internal NLB, and the Lambda backends are proxy integrations; clients use TLS")  # fmt: skip
    else:
        ack(stage, "HIPAA.Security-APIGWSSLEnabled", "stage prod: the backend is Lambda proxy integration inside AWS, "
            "not an HTTP endpoint, so there is no backend to present a client certificate to; clients use TLS")  # fmt: skip
    ack(api.rest_api.node.find_child("CloudWatchRole"), "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:"
        "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]", "API Gateway's account-level logging role "
        "uses the AWS-maintained policy made for exactly this purpose")  # fmt: skip


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
        ack(notifications, "HIPAA.Security-IAMNoInlinePolicy", f"the upload bucket's notification handler policy: {INLINE_POLICY}")


def acknowledge_gpu_service(gpu: GpuService) -> None:
    balancer = gpu.balancer
    ack(balancer, "AwsSolutions-ELB2", "the GPU services' internal NLB: NLBs write access logs for TLS listeners only, and "
        "its TCP listeners are reached only through the VPC link; API Gateway's access log records every request")  # fmt: skip
    ack(balancer, "HIPAA.Security-ELBLoggingEnabled", "the GPU services' internal NLB: access logs exist only for TLS "
        "listeners; each request is logged by API Gateway's access log before it crosses the VPC link")  # fmt: skip
    ack(balancer, "HIPAA.Security-ELBDeletionProtectionEnabled", "the GPU services' internal NLB holds no data and is "
        "recreated by the stack; deletion protection would make `cdk destroy` fail until it is lifted by hand")  # fmt: skip
    for name, function in gpu.functions.items():
        ack(function.listener, "HIPAA.Security-ELBv2ACMCertificateRequired", f"NLB listener of {name}: TCP inside a "
            "private VPC, reached only through API Gateway's VPC link; a TLS listener needs an ACM certificate for a "
            "domain this project does not own (docs/gpu.md says how to add one)")  # fmt: skip
    ack(gpu.hosts, "AwsSolutions-AS3", "the GPU hosts' Auto Scaling group is driven by the ECS capacity provider, "
        "whose scaling shows in the cluster's events and Container Insights; an SNS topic would have no subscriber")  # fmt: skip
    for route in gpu.vpc.public_subnets:
        ack(route.node.find_child("DefaultRoute"), "HIPAA.Security-VPCNoUnrestrictedRouteToIGW", f"public subnet "
            f"{route.node.id} of the GPU VPC holds only the NAT gateway, which needs the internet gateway route; "
            "hosts and tasks are in private subnets with no public addresses")  # fmt: skip
    flow_logs_role = gpu.vpc.node.find_child("FlowLogs").node.find_child("IAMRole")
    ack(flow_logs_role, "HIPAA.Security-IAMNoInlinePolicy", f"the VPC flow logs' role: {INLINE_POLICY}")
    host_role = gpu.node.find_child("HostRole")
    ack(host_role, "HIPAA.Security-IAMNoInlinePolicy", f"role of the GPU hosts: {INLINE_POLICY}")
    for rule in ("AwsSolutions-IAM5[Resource::*]", "AwsSolutions-IAM5[Action::ecs:Submit*]"):
        ack(host_role, rule, "role of the GPU hosts: the ECS agent's own grants as aws-cdk-lib scopes them (register "
            "with this cluster, poll for tasks, submit state changes); discovery and telemetry calls take no resource")  # fmt: skip
    for name, function in gpu.functions.items():
        ack(function.task_role, "HIPAA.Security-IAMNoInlinePolicy", f"task role of GPU function {name}: {INLINE_POLICY}")
        ack(function.execution_role, "HIPAA.Security-IAMNoInlinePolicy", f"execution role of GPU function {name}: {INLINE_POLICY}")
        ack(function.execution_role, "AwsSolutions-IAM5[Resource::*]", f"execution role of GPU function {name}: "
            "ecr:GetAuthorizationToken takes no resource-level permissions; image pulls are limited to its repository")  # fmt: skip
        ack(function.service.task_definition, "AwsSolutions-ECS2", f"task of GPU function {name}: its environment is "
            "the model bucket URL, model version and sha256, the region and a CUDA switch; none is a secret")  # fmt: skip

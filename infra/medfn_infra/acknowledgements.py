"""How this stack acknowledges cdk-nag findings: every reason it may give, in one registry.

Every acknowledgement names the rule, the resource, and why, and sits on the narrowest
construct that holds the finding (a role, a function, the stage). Each construct's module
acknowledges its own findings (`acknowledge_<construct>` beside the construct); grants of an
object-key prefix are acknowledged where they are made (`acknowledge_prefix`), so the
permission and its justification stay side by side. The reasons themselves live here, in
`REASONS`, and docs/deploy.md's "Security" section quotes each one with its rules
(tests/infra/test_security.py holds the two together). An acknowledgement is
"<what it is on>: <a registered reason>", so the same reason reads the same everywhere.
This module imports no construct of medfn_infra, so any of them can use it. Anything not
acknowledged fails `medfn synth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_s3 as s3
from constructs import IConstruct


@dataclass(frozen=True)
class Reason:
    rules: tuple[str, ...]  # the cdk-nag rules (without their [...] detail) this reason may acknowledge
    text: str


def _reason(*rules: str, text: str) -> Reason:
    return Reason(rules, text)


IAM5, IAM4, INLINE = "AwsSolutions-IAM5", "AwsSolutions-IAM4", "HIPAA.Security-IAMNoInlinePolicy"

# Every reason this stack gives. Keep each one true of every place it is used: the docs quote
# them as they are, and a reason that stops being true is a finding to fix, not to reword.
REASONS: dict[str, Reason] = {
    # ---- Lambda functions (model functions, the platform and health functions)
    "no_vpc": _reason(
        "HIPAA.Security-LambdaInsideVPC",
        text="reaches only AWS service APIs (S3, SQS, DynamoDB, KMS, CloudWatch, X-Ray) over TLS with IAM "
        "credentials and holds no private network resources; a VPC would need NAT or interface endpoints, "
        "a fixed hourly cost that a pay-per-call service must not carry at rest",
    ),
    "no_vpc_pacs": _reason(
        "HIPAA.Security-LambdaInsideVPC",
        text="reaches AWS service APIs (S3, SQS, DynamoDB, KMS, Secrets Manager, CloudWatch, X-Ray) over TLS with "
        "IAM credentials and, to store its results, the customer's PACS at the https:// DICOMweb URL chosen at "
        "synth (MEDFN_DICOMWEB_URL), with the credentials of the customer's secret when one is named; it holds "
        "no private network resources; a VPC would need NAT or interface endpoints, a fixed hourly cost that a "
        "pay-per-call service must not carry at rest",
    ),
    "python_312": _reason(
        "AwsSolutions-L1",
        text="pinned to python3.12 on purpose: medfn package installs cp312 manylinux wheels (onnxruntime, "
        "numpy, pydantic-core) that load only under that interpreter",
    ),
    "inline_policy": _reason(
        INLINE,
        text="the inline policy belongs to this one role alone and is created and deleted with it; a "
        "customer-managed policy would be attached to exactly the same single role",
    ),
    "xray": _reason(
        IAM5,
        text="Resource * is X-Ray's PutTraceSegments/PutTelemetryRecords, which take no resource-level permissions",
    ),
    # ---- object-key prefixes (IAM5 on <bucket>/<prefix>*): one reason per kind of grant
    "own_model": _reason(IAM5, text="the function reads the objects of its own model only"),
    "catalog": _reason(
        IAM5, text="the catalog and readiness check HEAD each deployed model's artifact (HeadObject needs GetObject)"
    ),
    "upload_slots": _reason(
        IAM5,
        text="presigned upload slots write new scans only under the prefix an image function listens on "
        "(a presigned POST carries the signer's rights)",
    ),
    "own_uploads": _reason(
        IAM5,
        text="reads, copies and (after quarantining) deletes only the scans uploaded for this function, "
        "each by the version its event names",
    ),
    "own_uploads_stow": _reason(
        IAM5,
        text="reads, copies and (after quarantining) deletes only the scans uploaded for this function, each by "
        "the version its event names, and writes there only the DICOM instances its own STOW-RS route receives",
    ),
    "own_quarantine": _reason(
        IAM5, text="writes quarantine copies, tagged with their reason, of this function's unreadable scans only"
    ),
    "own_results": _reason(IAM5, text="writes the result documents of this function's scans only"),
    # ---- storage
    "replication": _reason(
        "HIPAA.Security-S3BucketReplicationEnabled",
        text="versioned, with noncurrent versions kept as the retention policy in docs/deploy.md says, in one "
        "region; cross-region replication doubles storage cost and is a per-deployment disaster-recovery "
        "decision (docs/deploy.md)",
    ),
    "access_logs_sse_s3": _reason(
        "HIPAA.Security-S3DefaultEncryptionKMS",
        text="the server-access-log target: S3 delivers access logs only to buckets with SSE-S3 default "
        "encryption (SSE-KMS targets are unsupported); it holds no scans or results",
    ),
    "backup_role": _reason(
        IAM4,
        text="AWS Backup's role uses AWSBackupServiceRolePolicyForBackup, the AWS-maintained policy made for "
        "exactly this purpose (it creates and tags DynamoDB backups in the vault)",
    ),
    # ---- CDK's own helpers (they run only during deploys)
    "cdk_helper_logs": _reason(
        IAM4,
        text="a CDK deploy-time helper uses AWSLambdaBasicExecutionRole, the AWS-maintained log-writing "
        "policy (its logs go to a declared, encrypted log group with retention)",
    ),
    "cdk_helper_runtime": _reason(
        "AwsSolutions-L1", text="a CDK deploy-time helper: its runtime is chosen by aws-cdk-lib and upgraded with it"
    ),
    "cdk_helper_concurrency": _reason(
        "HIPAA.Security-LambdaConcurrency",
        text="a CDK deploy-time helper invoked only by CloudFormation, once a deploy",
    ),
    "cdk_helper_dlq": _reason(
        "HIPAA.Security-LambdaDLQ",
        text="a CDK deploy-time helper invoked synchronously by CloudFormation, which reports its failures",
    ),
    "cdk_helper_vpc": _reason(
        "HIPAA.Security-LambdaInsideVPC", text="a CDK deploy-time helper that talks only to S3 and CloudFormation"
    ),
    "model_sync": _reason(
        IAM5,
        text="BucketDeployment copies model_store/ into the model bucket at each deploy: it reads the asset zip "
        "from the CDK bootstrap bucket and syncs (writes, prunes) the model bucket with CDK's standard "
        "bucket read/write grant; it is the only principal the model bucket's policy lets write",
    ),
    # ---- the REST API
    "health_open": _reason(
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        text="a health probe: load balancers and uptime checks carry no credentials; live is a mock integration "
        "that reaches no backend, ready runs a function of its own with two reserved environments that answers "
        "only ready or not, and each has a method throttle of its own (and the WAF's per-IP rule, when it is on)",
    ),
    "iam_not_cognito": _reason(
        "AwsSolutions-COG4",
        text="the route is authorized with IAM (SigV4) and an API key, not a Cognito user pool: callers are "
        "server-side integrations with AWS credentials; MEDFN_AUTH=cognito switches to a user-pool authorizer",
    ),
    "api_key_only": _reason(
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        text="MEDFN_AUTH=api_key was chosen at synth: callers are identified by API keys tied to usage plans "
        "only; an API key is an identifier, not an authorizer, so this mode is for closed networks and "
        "demonstrations",
    ),
    "no_waf": _reason(
        "AwsSolutions-APIG3",
        text="MEDFN_WAF=0 was chosen at synth to save the web ACL's monthly fee; request rate and size stay "
        "bounded by the stage throttle, usage-plan throttles, API Gateway's 10 MB cap and each function's "
        "max_body_bytes",
    ),
    "no_cache": _reason(
        "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
        text="predictions are per request and may concern a patient; caching them would keep PHI outside the "
        "encrypted stores and bill hourly at rest",
    ),
    "lambda_backend_tls": _reason(
        "HIPAA.Security-APIGWSSLEnabled",
        text="client certificates prove API Gateway's identity to HTTP backends; the Lambda backends are proxy "
        "integrations inside AWS and the GPU services, when present, are reached only through the VPC link to "
        "an internal NLB whose security group admits nothing else, over TLS checked against the NLB's "
        "certificate; clients use TLS",
    ),
    "apigw_logs_role": _reason(
        IAM4,
        text="API Gateway's account-level logging role uses AmazonAPIGatewayPushToCloudWatchLogs, the "
        "AWS-maintained policy made for exactly this purpose",
    ),
    "invoke_policy": _reason(
        IAM5,
        text="the customer invoke policy allows execute-api:Invoke on the routes of the prod stage of this API "
        "only (v1 and v2); usage plans and API keys bound what each customer may call",
    ),
    # ---- the GPU service
    "nlb_no_deletion_protection": _reason(
        "HIPAA.Security-ELBDeletionProtectionEnabled",
        text="the internal NLB holds no data and is recreated by the stack; deletion protection would make "
        "cdk destroy fail until it is lifted by hand",
    ),
    "asg_notifications": _reason(
        "AwsSolutions-AS3",
        text="the GPU hosts' Auto Scaling group is driven by the ECS capacity provider, whose scaling shows in "
        "the cluster's events and Container Insights; an SNS topic would have no subscriber",
    ),
    "ecs_agent": _reason(
        IAM5,
        text="the ECS agent's own grants as aws-cdk-lib scopes them: register with this cluster, poll for "
        "tasks and submit state changes on it; DiscoverPollEndpoint and GetAuthorizationToken take no "
        "resource (the agent's log-writing grant on * is removed: containers log with their execution role)",
    ),
    "ecr_token": _reason(
        IAM5,
        text="ecr:GetAuthorizationToken takes no resource-level permissions; image pulls are limited to the "
        "function's repository",
    ),
    "task_environment": _reason(
        "AwsSolutions-ECS2",
        text="its environment is the model bucket URL, model version and sha256, the region, a CUDA switch "
        "and, for a scan worker, its queue, buckets, prefixes and tables; none is a secret",
    ),
}


def ack(scope: IConstruct, rule: str, reason: Reason, subject: str) -> None:
    """Acknowledge `rule` on `scope` as "<subject>: <reason>"; the reason must be meant for the rule."""
    base = rule.split("[", 1)[0]
    if base not in reason.rules:
        raise ValueError(f"reason {reason.text[:40]!r}... is not registered for {base}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=f"{subject}: {reason.text}"))


def acknowledge_prefix(role: IConstruct, bucket: s3.IBucket, pattern: str, reason: Reason, subject: str) -> None:
    """An IAM5 finding for `arn:...:bucket/<pattern>`, as cdk-nag spells it: `<LogicalId.Arn>/...`."""
    logical_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
    ack(role, f"{IAM5}[Resource::<{logical_id}.Arn>/{pattern}]", reason, f"{subject}, objects under {pattern}")

"""How this stack acknowledges cdk-nag findings, and the reasons that recur across them.

Every acknowledgement names the rule, the resource, and why, and sits on the narrowest
construct that holds the finding (a role, a function, the stage). Each construct's module
acknowledges its own findings (`acknowledge_<construct>` beside the construct); grants of an
object-key prefix are acknowledged where they are made (`acknowledge_prefix`), so the
permission and its justification stay side by side. This module imports no construct of
medfn_infra, so any of them can use it. Anything not acknowledged fails `medfn synth`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

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

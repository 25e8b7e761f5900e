"""Just enough of IAM's policy evaluation to ask a synthesized template "may this role make
this call?": identity policies of a role, the bucket policy of an S3 resource, conditions.

moto (tests/pipeline) runs the code against fake AWS but enforces no IAM at all, so a call the
code makes and the stack does not grant fails only in AWS; tests/infra/test_permissions.py
asks this module instead. What it models: Allow and Deny statements, Action/Resource globs,
and the condition operators this stack uses (String*, Arn*, Bool; their Not forms; missing
keys as IAM treats them; the set qualifiers ForAllValues and ForAnyValue on multivalued keys
such as dynamodb:LeadingKeys, given as a list or a single string). What it does not:
NotAction/NotResource, permission boundaries, SCPs, sessions, key policies (this stack's keys
trust the account, so IAM policies decide).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

ACCOUNT, REGION, PARTITION = "111122223333", "us-east-1", "aws"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "medfn",
}


class Resolver:
    """CloudFormation intrinsics -> strings, each resource named after its logical id."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.resources: dict[str, Any] = template["Resources"]

    def type_of(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["Type"])

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.ref(value["Ref"])
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return self.attribute(logical_id, attribute)
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self.resolve(p)) for p in parts)
        if "Fn::Sub" in value:
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.ref(m.group(1))), value["Fn::Sub"])
        return {k: self.resolve(v) for k, v in value.items()}

    def ref(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        kind = self.type_of(name)
        if kind == "AWS::S3::Bucket":
            return name.lower()
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return name

    def attribute(self, logical_id: str, attribute: str) -> str:
        kind = self.type_of(logical_id)
        arns = {
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{logical_id.lower()}",
            "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{logical_id}",
            "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{logical_id}",
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{logical_id}",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{logical_id}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{logical_id}:*",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{logical_id}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        return f"<{logical_id}.{attribute}>"


@dataclass
class Policies:
    """The statements that apply to one role: its own policies, and resource policies."""

    template: dict[str, Any]
    resolver: Resolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.template)

    def role_arn(self, role: str) -> str:
        return self.resolver.attribute(role, "Arn")

    def identity_statements(self, role: str) -> list[dict[str, Any]]:
        found = []
        for resource in self.template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role} in props.get(
                "Roles", []
            ):
                found += _statements(props["PolicyDocument"])
        for inline in self.template["Resources"][role]["Properties"].get("Policies", []):
            found += _statements(inline["PolicyDocument"])
        return [self.resolver.resolve(s) for s in found]

    def bucket_statements(self, resource_arn: str) -> list[dict[str, Any]]:
        """Bucket policy statements of the bucket `resource_arn` is in (or is)."""
        if not resource_arn.startswith(f"arn:{PARTITION}:s3:::"):
            return []
        bucket = resource_arn.removeprefix(f"arn:{PARTITION}:s3:::").split("/", 1)[0]
        found = []
        for resource in self.template["Resources"].values():
            if (
                resource["Type"] == "AWS::S3::BucketPolicy"
                and self.resolver.resolve(resource["Properties"]["Bucket"]) == bucket
            ):
                found += _statements(self.resolver.resolve(resource["Properties"]["PolicyDocument"]))
        return found

    def decision(self, role: str, action: str, resource: str, context: dict[str, str | list[str]] | None = None) -> str:
        """ "allowed", "denied" (an explicit Deny) or "not granted" (no Allow matches)."""
        request: dict[str, str | list[str]] = {
            "aws:SecureTransport": "true",
            "aws:PrincipalArn": self.role_arn(role),
            **(context or {}),
        }
        principal = self.role_arn(role)
        identity = self.identity_statements(role)
        resource_based = [s for s in self.bucket_statements(resource) if _names_principal(s, principal)]
        matching = [s for s in identity + resource_based if _matches(s, action, resource, request)]
        if any(s["Effect"] == "Deny" for s in matching):
            return "denied"
        return "allowed" if any(s["Effect"] == "Allow" for s in matching) else "not granted"

    def allows(self, role: str, action: str, resource: str, context: dict[str, str | list[str]] | None = None) -> bool:
        return self.decision(role, action, resource, context) == "allowed"


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return list(statements) if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _names_principal(statement: dict[str, Any], principal_arn: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        aws = _as_list(principal.get("AWS", []))
        return "*" in aws or principal_arn in aws
    return False


def _matches(statement: dict[str, Any], action: str, resource: str, request: dict[str, str | list[str]]) -> bool:
    assert "NotAction" not in statement and "NotResource" not in statement, statement
    if not any(fnmatchcase(action.lower(), a.lower()) for a in _as_list(statement["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in _as_list(statement.get("Resource", "*"))):
        return False
    return all(
        _condition(operator, key, _as_list(expected), request)
        for operator, keys in statement.get("Condition", {}).items()
        for key, expected in keys.items()
    )


def _condition(operator: str, key: str, expected: list[str], request: dict[str, str | list[str]]) -> bool:
    qualifier, _, operator = operator.rpartition(":")  # "ForAllValues:StringLike" -> a set operator
    if qualifier:
        return _set_condition(qualifier, operator, key, expected, request)
    negated = "Not" in operator
    base = operator.replace("Not", "").removesuffix("IfExists")
    if key not in request:
        # IAM: a missing key fails a positive operator and satisfies a negated one (and ...IfExists)
        return negated or operator.endswith("IfExists")
    actual = request[key]
    assert isinstance(actual, str), f"{key} has several values: only ForAllValues/ForAnyValue take them"
    return _hit(base, actual, expected) != negated


def _set_condition(
    qualifier: str, operator: str, key: str, expected: list[str], request: dict[str, str | list[str]]
) -> bool:
    """ForAllValues: every value of the key matches (vacuously true when the request has none:
    IAM's own rule, so grant only actions whose requests always carry the key); ForAnyValue:
    at least one does (false when it has none). Negated operators are not modelled."""
    assert "Not" not in operator and "IfExists" not in operator, operator
    values = request.get(key, [])
    values = [values] if isinstance(values, str) else list(values)
    hits = [_hit(operator, v, expected) for v in values]
    if qualifier == "ForAllValues":
        return all(hits)
    if qualifier == "ForAnyValue":
        return any(hits)
    raise AssertionError(f"condition qualifier {qualifier} is not modelled here")


def _hit(base: str, actual: str, expected: list[str]) -> bool:
    if base in ("StringEquals", "ArnEquals"):
        return actual in expected
    if base in ("StringLike", "ArnLike"):
        return any(fnmatchcase(actual, e) for e in expected)
    if base == "Bool":
        return actual.lower() in [str(e).lower() for e in expected]
    raise AssertionError(f"condition operator {base} is not modelled here")

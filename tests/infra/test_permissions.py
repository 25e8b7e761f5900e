"""Every AWS call the deployed code makes is granted to the role that makes it, and no more.

moto enforces no IAM, so the pipeline's tests pass whatever the stack grants; this test reads
the synthesized IAM policies (and bucket policies) instead. `CALLS` lists every S3, KMS,
DynamoDB, SQS and logging call, with where in src/ (or infra/) it is made; `NOT_GRANTED` what
a role must not be able to do. Add a call to the code, add its line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.iam import PARTITION, REGION, Policies
from tests.infra.stack_project import (
    OTHER_SECRET,
    SECRET,
    SECRET_KEY,
    function_configs,
    function_id,
    lambdas,
    logical_prefix,
)

VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
VIA_SQS = {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}
VIA_DYNAMODB = {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"}
VIA_SECRETS = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
# An upload's key, as medfn.pipeline.upload_slots.presign_upload makes it: <prefix><day>/<uuid><suffix>
SCAN = "{function}/2026/11/22/0123456789abcdef0123456789abcdef.dcm"
# A series table key, as medfn.pipeline.series makes it: <function>/<StudyInstanceUID>/<SeriesInstanceUID>
SERIES_KEY = "{function}/1.2.826.0.1.3680043.8.498.1/1.2.826.0.1.3680043.8.498.2"
OWN_SERIES = {"dynamodb:LeadingKeys": SERIES_KEY}
OTHER_SERIES = {"dynamodb:LeadingKeys": SERIES_KEY.replace("{function}", "{other_function}")}
# An instance STOW-RS stored, as medfn.dicomweb.sinks.S3Sink names it: <function>/<study>/<series>/<sop>.dcm
INSTANCE = "{function}/1.2.826.0.1.3680043.8.498.1/1.2.826.0.1.3680043.8.498.2/1.2.826.0.1.3680043.8.498.3.dcm"
OWN_SECRET = {**VIA_SECRETS, "kms:EncryptionContext:SecretARN": "{secret}"}


@dataclass(frozen=True)
class Call:
    # "any"; "model": every model function; "pipeline": those with uploads; "series": those with
    # [series]; "no_series": pipeline functions without; "stow": pipeline functions with HTTP routes
    # (STOW-RS); "no_stow": other model functions; "destination": pipeline functions of a stack given
    # a DICOMweb destination (DESTINATION); "no_destination": every other function; "platform"; "health"
    who: str
    action: str
    # {models} {uploads} {results}: bucket ARNs; {*_key}, {table}, {series_table}, {queue}, {dead_letters}, {logs}:
    # ARNs; {secret}, {other_secret}, {secret_key}: the customer's (SECRET, OTHER_SECRET, SECRET_KEY)
    resource: str
    where: str  # where the call is made
    context: dict[str, str | list[str]] = field(default_factory=dict)
    mode: str | None = None  # only under this MEDFN_QUARANTINE_MODE


CALLS = [
    # ---- every Lambda function: the runtime and Lambda itself, with the function's role
    Call("any", "logs:CreateLogStream", "{logs}", "Lambda's runtime, writing the function's log group"),
    Call("any", "logs:PutLogEvents", "{logs}", "Lambda's runtime, writing the function's log group"),
    Call("any", "xray:PutTraceSegments", "*", "Lambda's active tracing (X-Ray)"),
    Call("any", "sqs:SendMessage", "{dead_letters}", "Lambda, parking a failed asynchronous invocation"),
    Call("any", "kms:GenerateDataKey", "{queue_key}", "SQS encrypting that message with the queue key", VIA_SQS),
    Call("any", "kms:Decrypt", "{queue_key}", "SQS, reusing a cached data key for that message", VIA_SQS),
    # ---- model functions: src/medfn/serving/store.py, S3Store over MEDFN_MODEL_STORE (s3://<models>/models)
    Call("model", "s3:GetObject", "{models}/models/{model}/model.toml", "S3Store.read_config: get_object"),
    Call(
        "model",
        "s3:ListBucket",
        "{models}",
        "S3Store.versions: list_objects_v2(Prefix='models/<model>/', Delimiter='/')",
        {"s3:prefix": "models/{model}/"},
    ),
    Call(
        "model",
        "s3:GetObject",
        "{models}/models/{model}/{version}/model.onnx",
        "S3Store.fetch: download_file (HeadObject then GetObject, both authorised by s3:GetObject)",
    ),
    Call("model", "kms:Decrypt", "{model_key}", "S3 decrypting the model objects S3Store reads", VIA_S3),
    # ---- image functions: the SQS event source, then src/medfn/pipeline/s3_storage.py and dynamo_status.py
    Call("pipeline", "sqs:ReceiveMessage", "{queue}", "Lambda's event source mapping polling the upload queue"),
    Call("pipeline", "sqs:DeleteMessage", "{queue}", "the mapping deleting a processed message"),
    Call("pipeline", "sqs:ChangeMessageVisibility", "{queue}", "the mapping returning a failed batch item"),
    Call("pipeline", "sqs:GetQueueAttributes", "{queue}", "the mapping reading the queue's settings"),
    Call("pipeline", "kms:Decrypt", "{queue_key}", "SQS decrypting the messages it hands the mapping", VIA_SQS),
    Call("pipeline", "s3:GetObjectVersion", f"{{uploads}}/{SCAN}", "S3Storage.fetch: get_object(VersionId=...)"),
    Call("pipeline", "s3:GetObject", f"{{uploads}}/{SCAN}", "S3Storage.fetch: get_object of an unversioned event"),
    Call(
        "pipeline",
        "s3:ListBucketVersions",
        "{uploads}",
        "S3Storage.fetch: list_object_versions of a slot's key",
        {"s3:prefix": SCAN},
    ),  # fmt: skip
    Call("pipeline", "kms:Decrypt", "{data_key}", "S3 decrypting the scan (fetch, and the quarantine copy)", VIA_S3),
    Call("pipeline", "s3:PutObject", f"{{results}}/results/{SCAN}.json", "S3Storage.write_result: put_object"),
    Call("pipeline", "kms:GenerateDataKey", "{data_key}", "S3 encrypting a result or a quarantine copy", VIA_S3),
    Call(
        "pipeline",
        "s3:GetObjectVersion",
        f"{{uploads}}/{SCAN}",
        "S3Storage.quarantine: copy_object's CopySource with the event's VersionId",
        mode="move",
    ),
    Call(
        "pipeline",
        "s3:PutObject",
        f"{{uploads}}/quarantine/{SCAN}",
        "S3Storage.quarantine: copy_object to quarantine/<key>",
        mode="move",
    ),
    Call(
        "pipeline",
        "s3:PutObjectTagging",
        f"{{uploads}}/quarantine/{SCAN}",
        "S3Storage.quarantine: copy_object(TaggingDirective='REPLACE', Tagging=...) tags the copy",
        mode="move",
    ),
    Call(
        "pipeline",
        "s3:DeleteObjectVersion",
        f"{{uploads}}/{SCAN}",
        "S3Storage.release: delete_object(VersionId=...) of the quarantined original",
        mode="move",
    ),
    Call(
        "pipeline",
        "s3:DeleteObject",
        f"{{uploads}}/{SCAN}",
        "S3Storage.release: delete_object(IfMatch=...) of an unversioned original",
        mode="move",
    ),
    Call(
        "pipeline",
        "s3:GetObjectVersionTagging",
        f"{{uploads}}/{SCAN}",
        "S3Storage.quarantine: get_object_tagging(VersionId=...)",
        mode="tag",
    ),
    Call(
        "pipeline",
        "s3:PutObjectVersionTagging",
        f"{{uploads}}/{SCAN}",
        "S3Storage.quarantine: put_object_tagging(VersionId=...)",
        mode="tag",
    ),
    Call("pipeline", "dynamodb:GetItem", "{table}", "DynamoStatusTable.settled: get_item(ConsistentRead=True)"),
    Call("pipeline", "dynamodb:PutItem", "{table}", "DynamoStatusTable.record: conditional put_item"),
    Call("pipeline", "dynamodb:UpdateItem", "{table}", "DynamoStatusTable.count_failure: update_item ADD"),
    Call(
        "pipeline",
        "dynamodb:Query",
        "{table}",
        "DynamoStatusTable: query of an object key's earlier records (one scan per upload slot)",
    ),
    Call("pipeline", "kms:Decrypt", "{data_key}", "DynamoDB using the table's customer managed key", VIA_DYNAMODB),
    Call("pipeline", "kms:GenerateDataKey", "{data_key}", "DynamoDB using the table's key for writes", VIA_DYNAMODB),
    # ---- series functions ([series]): medfn.pipeline.series, on MEDFN_SERIES_TABLE and MEDFN_SERIES_QUEUE_URL
    Call(
        "series",
        "dynamodb:GetItem",
        "{series_table}",
        "medfn.pipeline.series: get_item of the series record",
        OWN_SERIES,
    ),
    Call(
        "series",
        "dynamodb:PutItem",
        "{series_table}",
        "medfn.pipeline.series: conditional put_item of an instance",
        OWN_SERIES,
    ),
    Call(
        "series",
        "dynamodb:UpdateItem",
        "{series_table}",
        "medfn.pipeline.series: update_item of the series record",
        OWN_SERIES,
    ),
    Call(
        "series", "dynamodb:Query", "{series_table}", "medfn.pipeline.series: query of a series' instances", OWN_SERIES
    ),
    Call("series", "kms:Decrypt", "{data_key}", "DynamoDB using the series table's key", VIA_DYNAMODB),
    Call("series", "kms:GenerateDataKey", "{data_key}", "DynamoDB using the series table's key", VIA_DYNAMODB),
    Call(
        "series",
        "sqs:SendMessage",
        "{queue}",
        "medfn.pipeline.series: send_message(DelaySeconds=settle_s) of the stability check to its own upload queue",
    ),
    Call("series", "kms:GenerateDataKey", "{queue_key}", "SQS encrypting the stability check", VIA_SQS),
    Call("series", "kms:Decrypt", "{queue_key}", "SQS, reusing a cached data key for it", VIA_SQS),
    # ---- STOW-RS in: medfn.sources.http.upload_sink -> medfn.dicomweb.sinks.S3Sink(MEDFN_UPLOAD_BUCKET, "<fn>/")
    Call(
        "stow",
        "s3:PutObject",
        f"{{uploads}}/{INSTANCE}",
        "S3Sink.put: put_object of an instance POST /v1/models/<model>/dicomweb/studies received",
    ),
    Call("stow", "kms:GenerateDataKey", "{data_key}", "S3 encrypting that instance with the data key", VIA_S3),
    # ---- results out, with a destination: medfn.dicomweb.destination_from_env -> CredentialSource
    Call(
        "destination",
        "secretsmanager:GetSecretValue",
        "{secret}",
        "CredentialSource._read_secret: get_secret_value(SecretId=MEDFN_DICOMWEB_SECRET) at the first delivery",
    ),
    Call(
        "destination",
        "kms:Decrypt",
        "{secret_key}",
        "Secrets Manager decrypting that secret with the customer's key (its encryption context names it)",
        OWN_SECRET,
    ),
    # ---- the readiness function: infra/platform/handler.py, ready()
    Call(
        "health",
        "s3:GetObject",
        "{models}/models/{each_model}/{each_version}/model.onnx",
        "ready() -> catalog(): head_object of each deployed model's artifact",
    ),
    # ---- the platform function: infra/platform/handler.py
    Call(
        "platform",
        "s3:GetObject",
        "{models}/models/{each_model}/{each_version}/model.onnx",
        "catalog(): head_object of each deployed model's artifact (HeadObject needs s3:GetObject, no KMS)",
    ),
    Call(
        "platform",
        "s3:PutObject",
        "{uploads}/{each_upload_prefix}2026/11/22/0123456789abcdef0123456789abcdef.dcm",
        "medfn.pipeline.upload_slots.presign_upload: generate_presigned_post; the client's POST runs with "
        "the platform's rights (S3 checks s3:PutObject on the key)",
    ),
    Call("platform", "kms:GenerateDataKey", "{data_key}", "S3 encrypting that upload with the data key", VIA_S3),
]

NOT_GRANTED = [
    # the platform reads no scan, no result and no model data: it may not decrypt either key
    Call("platform", "kms:Decrypt", "{data_key}", "", VIA_S3),
    Call("platform", "kms:Decrypt", "{model_key}", "", VIA_S3),
    Call("platform", "s3:GetObject", f"{{uploads}}/{SCAN}", ""),
    # the readiness function only looks at model artifacts
    Call("health", "kms:Decrypt", "{model_key}", "", VIA_S3),
    Call("health", "kms:GenerateDataKey", "{data_key}", "", VIA_S3),
    Call("health", "s3:PutObject", "{uploads}/{other_function}/2026/11/22/x.dcm", ""),
    # a model function reads its own model only, and with KMS only through S3
    Call("model", "s3:GetObject", "{models}/models/{other_model}/model.toml", ""),
    Call("model", "kms:Decrypt", "{model_key}", "a direct decrypt, not through S3"),
    Call("model", "s3:PutObject", "{models}/models/{model}/{version}/model.onnx", "the model bucket is the deploy's"),
    Call("model", "s3:DeleteObject", "{models}/models/{model}/{version}/model.onnx", ""),
    # an image function touches its own prefixes only
    Call("pipeline", "s3:GetObjectVersion", "{uploads}/{other_function}/2026/11/22/x.dcm", ""),
    Call("pipeline", "s3:ListBucketVersions", "{uploads}", "", {"s3:prefix": "{other_function}/2026/11/22/x.dcm"}),
    Call("pipeline", "s3:PutObject", "{results}/results/{other_function}/2026/11/22/x.dcm.json", ""),
    Call(
        "no_stow", "s3:PutObject", "{uploads}/{function}/2026/11/22/x.dcm", "no STOW-RS route: it never writes a scan"
    ),
    Call("stow", "s3:PutObject", f"{{uploads}}/{INSTANCE.replace('{function}', '{other_function}')}", "another's"),
    Call("stow", "s3:PutObjectTagging", f"{{uploads}}/{INSTANCE}", "S3Sink.put sends no tags", mode="move"),
    # a secret: only the one named at synth, only by the functions that deliver results, only through Secrets Manager
    Call("any", "secretsmanager:GetSecretValue", "{other_secret}", "a secret the stack was not given"),
    Call("no_destination", "secretsmanager:GetSecretValue", "{secret}", "no destination, or no uploads"),
    Call("no_destination", "kms:Decrypt", "{secret_key}", "", OWN_SECRET),
    Call("destination", "secretsmanager:DescribeSecret", "{secret}", "CredentialSource reads the value alone"),
    Call("destination", "secretsmanager:PutSecretValue", "{secret}", "the customer sets and rotates it"),
    Call("destination", "kms:Decrypt", "{secret_key}", "a direct decrypt, not through Secrets Manager"),
    Call(
        "destination",
        "kms:Decrypt",
        "{secret_key}",
        "another secret under the same key",
        {**VIA_SECRETS, "kms:EncryptionContext:SecretARN": "{other_secret}"},
    ),
    Call("pipeline", "kms:Decrypt", "{data_key}", "a direct decrypt, not through S3 or DynamoDB"),
    # the series table: a function's own keys only, and no call the code does not make
    Call("pipeline", "dynamodb:GetItem", "{series_table}", "another function's series", OTHER_SERIES),
    Call("pipeline", "dynamodb:PutItem", "{series_table}", "another function's series", OTHER_SERIES),
    Call(
        "pipeline",
        "dynamodb:Query",
        "{series_table}",
        "keys of its own and another's",
        {"dynamodb:LeadingKeys": [SERIES_KEY, OTHER_SERIES["dynamodb:LeadingKeys"]]},
    ),
    Call("series", "dynamodb:Scan", "{series_table}", "a scan names no key: every function's series"),
    Call("series", "dynamodb:DeleteItem", "{series_table}", "records expire (TTL), never deleted", OWN_SERIES),
    Call("series", "sqs:SendMessage", "{other_queue}", "another function's queue"),
    Call("no_series", "dynamodb:GetItem", "{series_table}", "a function without [series]", OWN_SERIES),
    Call("no_series", "sqs:SendMessage", "{queue}", "only series functions send to their queue"),
    Call("pipeline", "dynamodb:Scan", "{table}", "the status table is read by key only"),
]


@dataclass
class Deployed:
    """One Lambda function of the synthesized stack, and what its calls are made on."""

    name: str
    kinds: set[str]
    role: str
    values: dict[str, Any]
    mode: str | None


def deployed_functions(template: Template, project_root: Path, destination: bool = False) -> list[Deployed]:
    """`destination`: the template was synthesized with DESTINATION."""
    raw = template.to_json()
    resources = raw["Resources"]
    policies = Policies(raw)

    def logical(prefix: str, kind: str) -> str:
        [found] = [k for k, v in resources.items() if k.startswith(prefix) and v["Type"] == kind]
        return found

    shared = {
        "models": policies.resolver.attribute(logical("StorageModels", "AWS::S3::Bucket"), "Arn"),
        "uploads": policies.resolver.attribute(logical("StorageUploads", "AWS::S3::Bucket"), "Arn"),
        "results": policies.resolver.attribute(logical("StorageResults", "AWS::S3::Bucket"), "Arn"),
        "table": policies.resolver.attribute(logical("StorageStatusTable", "AWS::DynamoDB::Table"), "Arn"),
        "series_table": policies.resolver.attribute(logical("StorageSeriesTable", "AWS::DynamoDB::Table"), "Arn"),
        "model_key": policies.resolver.attribute(logical("StorageModelKey", "AWS::KMS::Key"), "Arn"),
        "data_key": policies.resolver.attribute(logical("StorageKey", "AWS::KMS::Key"), "Arn"),
        "queue_key": policies.resolver.attribute(logical("StorageQueueKey", "AWS::KMS::Key"), "Arn"),
        "secret": SECRET,
        "other_secret": OTHER_SECRET,
        "secret_key": SECRET_KEY,
    }
    configs = function_configs(project_root)
    queues = {name: upload_queue(resources, policies, name) for name, c in configs.items() if uploads(c)}
    found = []
    for name in [*configs, "platform", "health"]:
        function_logical = function_id(template, name)
        props = lambdas(template)[function_logical]
        env = props["Environment"]["Variables"]
        values = dict(shared, function=name, logs=policies.resolver.resolve(_log_group_arn(props, resources)))
        values["dead_letters"] = policies.resolver.resolve(props["DeadLetterConfig"]["TargetArn"])
        kinds = {"any"}
        if name in ("platform", "health"):
            kinds.add(name)
            values["other_function"] = sorted(configs)[0]
        else:
            config = configs[name]
            others = sorted(set(configs) - {name})
            values.update(
                model=config["model"],
                version=env["MEDFN_MODEL_VERSION"],
                other_model=next(configs[o]["model"] for o in others if configs[o]["model"] != config["model"]),
                other_function=others[0],
            )
            kinds.add("model")
            kinds.add("stow" if uploads(config) and http(config) else "no_stow")
            if uploads(config):
                kinds |= {"pipeline", "series" if "series" in config else "no_series"}
                values["queue"] = queues[name]
                values["other_queue"] = next(q for n, q in queues.items() if n != name)
        kinds.add("destination" if destination and "pipeline" in kinds else "no_destination")
        role = props["Role"]["Fn::GetAtt"][0]
        found.append(Deployed(name, kinds, role, values, env.get("MEDFN_QUARANTINE_MODE")))
    return found


def uploads(config: dict[str, Any]) -> bool:
    return bool(config.get("triggers", {}).get("uploads"))


def http(config: dict[str, Any]) -> bool:
    return bool(config.get("triggers", {}).get("http", True))


def upload_queue(resources: dict[str, Any], policies: Policies, name: str) -> str:
    """The ARN of the queue the function's event source mapping reads."""
    [mapping] = [
        m["Properties"]
        for k, m in resources.items()
        if m["Type"] == "AWS::Lambda::EventSourceMapping" and k.startswith(logical_prefix(name) + "LiveSqsEventSource")
    ]
    return str(policies.resolver.resolve(mapping["EventSourceArn"]))


def _log_group_arn(props: dict[str, Any], resources: dict[str, Any]) -> Any:
    group = props["LoggingConfig"]["LogGroup"]
    assert "Ref" in group and resources[group["Ref"]]["Type"] == "AWS::Logs::LogGroup"
    return {"Fn::GetAtt": [group["Ref"], "Arn"]}


def expand(call: Call, function: Deployed, project_root: Path) -> list[tuple[str, dict[str, str | list[str]]]]:
    """The call's concrete (resource ARN, context) pairs for this function."""
    configs = function_configs(project_root)
    template = call.resource.replace("{function}", function.name)
    pairs = []
    if "{each_model}" in template:  # the platform: one call per deployed model
        for config in configs.values():
            pairs.append(template.replace("{each_model}", config["model"]).replace("{each_version}", "1"))
    elif "{each_upload_prefix}" in template:
        for name, config in configs.items():
            if config.get("triggers", {}).get("uploads"):
                pairs.append(template.replace("{each_upload_prefix}", f"{name}/"))
    else:
        pairs.append(template)
    values = function.values

    def fill(value: str | list[str]) -> str | list[str]:
        return value.format(**values) if isinstance(value, str) else [v.format(**values) for v in value]

    return [(resource.format(**values), {k: fill(v) for k, v in call.context.items()}) for resource in pairs]


@pytest.fixture(scope="module")
def functions(template: Template, project_root: Path) -> list[Deployed]:
    found = deployed_functions(template, project_root)
    kinds = set().union(*(f.kinds for f in found))
    assert {"platform", "health", "model", "pipeline", "series", "no_series", "stow", "no_stow"} <= kinds
    assert "destination" not in kinds
    return found


@pytest.fixture(scope="module")
def destination_functions(destination_template: Template, project_root: Path) -> list[Deployed]:
    found = deployed_functions(destination_template, project_root, destination=True)
    assert {"destination", "no_destination"} <= set().union(*(f.kinds for f in found))
    return found


# Each check runs on the default stack and on one given a DICOMweb destination (DESTINATION).
STACKS = pytest.mark.parametrize(
    "stack",
    [("template", "functions"), ("destination_template", "destination_functions")],
    ids=["default", "destination"],
    indirect=True,
)


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> tuple[Template, list[Deployed]]:
    template_fixture, functions_fixture = request.param
    return request.getfixturevalue(template_fixture), request.getfixturevalue(functions_fixture)


@STACKS
def test_every_call_the_code_makes_is_granted(stack: tuple[Template, list[Deployed]], project_root: Path):
    template, functions = stack
    policies = Policies(template.to_json())
    missing, checked = [], 0
    for function in functions:
        for call in CALLS:
            if call.who not in function.kinds or (call.mode and call.mode != function.mode):
                continue
            for resource, context in expand(call, function, project_root):
                checked += 1
                decision = policies.decision(function.role, call.action, resource, context)
                if decision != "allowed":
                    missing.append(
                        f"{function.name}: {call.action} on {resource} {context or ''} ({call.where}): {decision}"
                    )
    assert not missing, "calls the code makes that the stack does not allow:\n" + "\n".join(missing)
    assert checked > 100


def test_image_functions_run_in_the_quarantine_mode_they_are_granted(functions: list[Deployed]) -> None:
    from medfn.pipeline.settings import QUARANTINE_MODES

    modes = {f.mode for f in functions if "pipeline" in f.kinds}
    assert modes and modes <= set(QUARANTINE_MODES)
    assert all(f.mode is None for f in functions if "pipeline" not in f.kinds)


@STACKS
def test_roles_cannot_do_what_the_code_does_not(stack: tuple[Template, list[Deployed]], project_root: Path):
    template, functions = stack
    policies = Policies(template.to_json())
    extra = []
    for function in functions:
        for call in NOT_GRANTED:
            if call.who not in function.kinds or (call.mode and call.mode != function.mode):
                continue
            for resource, context in expand(call, function, project_root):
                if policies.allows(function.role, call.action, resource, context):
                    extra.append(f"{function.name}: {call.action} on {resource} {context or ''} {call.where}")
    assert not extra, "granted but never called:\n" + "\n".join(extra)


@STACKS
def test_only_image_functions_touch_the_data_key(stack: tuple[Template, list[Deployed]]) -> None:
    template, functions = stack
    policies = Policies(template.to_json())
    for function in functions:
        data_key = function.values["data_key"]
        for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
            for via in (VIA_S3, VIA_SQS, VIA_DYNAMODB, {}):
                allowed = policies.allows(function.role, action, data_key, via)
                expected = "pipeline" in function.kinds and bool(via) and via is not VIA_SQS
                if function.name == "platform" and action == "kms:GenerateDataKey" and via is VIA_S3:
                    expected = True  # upload slots: S3 makes a data key for each PUT
                if action == "kms:Encrypt" and via is VIA_S3:
                    expected = False
                assert allowed == expected, f"{function.name}: {action} {via}: {allowed}"


@STACKS
def test_every_kms_grant_of_a_function_goes_through_a_service(stack: tuple[Template, list[Deployed]]) -> None:
    template, functions = stack
    policies = Policies(template.to_json())
    for function in functions:
        for statement in policies.identity_statements(function.role):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("kms:") for a in actions):
                via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", "")
                assert via.endswith(f".{REGION}.amazonaws.com"), f"{function.name}: {statement}"


def test_models_and_patient_data_have_separate_keys(template: Template) -> None:
    raw = template.to_json()
    resources = raw["Resources"]
    keys = {}
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::S3::Bucket" and "BucketEncryption" in resource["Properties"]:
            rule = resource["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            key = rule["ServerSideEncryptionByDefault"].get("KMSMasterKeyID")
            keys[logical] = key and key["Fn::GetAtt"][0]
        if resource["Type"] == "AWS::DynamoDB::Table":
            keys[logical] = resource["Properties"]["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]
    by_name = {next(k for k in keys if k.startswith(f"Storage{n}")): n for n in ("Models", "Uploads", "Results")}
    model_key = keys[next(k for k, n in by_name.items() if n == "Models")]
    data_keys = {keys[k] for k, n in by_name.items() if n != "Models"} | {
        v for k, v in keys.items() if k.startswith("StorageStatusTable")
    }
    assert model_key.startswith("StorageModelKey")
    assert len(data_keys) == 1 and model_key not in data_keys


def test_service_principals_are_conditioned_on_this_account_and_source(template: Template) -> None:
    """Key, queue and topic policies: a service may act only for this account's own resources."""
    raw = template.to_json()
    for logical, resource in raw["Resources"].items():
        props = resource.get("Properties", {})
        document = {
            "AWS::KMS::Key": props.get("KeyPolicy"),
            "AWS::SQS::QueuePolicy": props.get("PolicyDocument"),
            "AWS::SNS::TopicPolicy": props.get("PolicyDocument"),
        }.get(resource["Type"])
        for statement in (document or {}).get("Statement", []):
            service = (
                statement.get("Principal", {}).get("Service") if isinstance(statement.get("Principal"), dict) else None
            )
            if not service or statement["Effect"] != "Allow":
                continue
            conditions = statement.get("Condition", {})
            if "logs." in str(service):  # CloudWatch Logs: bound to this account's log groups by encryption context
                assert "kms:EncryptionContext:aws:logs:arn" in conditions["ArnLike"], logical
                continue
            assert "aws:SourceAccount" in conditions.get("StringEquals", {}), f"{logical}: {statement}"
            assert "aws:SourceArn" in conditions.get("ArnLike", {}), f"{logical}: {statement}"


def test_the_model_bucket_takes_writes_from_the_deployment_alone(template: Template) -> None:
    raw = template.to_json()
    policies = Policies(raw)
    resources = raw["Resources"]
    [models] = [k for k in resources if k.startswith("StorageModels") and resources[k]["Type"] == "AWS::S3::Bucket"]
    [deployer] = [
        k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role" and k.startswith("CustomCDKBucketDeployment")
    ]
    target = f"arn:{PARTITION}:s3:::{models.lower()}/models/breast_mass/1/model.onnx"
    assert policies.decision(deployer, "s3:PutObject", target) == "allowed"
    assert policies.decision(deployer, "s3:DeleteObject", target) == "allowed"
    # any other principal, an administrator with s3:* included, meets the bucket policy's Deny
    for statement in policies.bucket_statements(target):
        if statement["Effect"] == "Deny" and "s3:PutObject*" in statement["Action"]:
            assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": policies.role_arn(deployer)}}
            break
    else:
        raise AssertionError("no Deny of model writes in the model bucket's policy")

"""One Lambda per discovered function, with everything a HIPAA review asks of it.

Each gets its own role (read only its model's prefix, decrypt with the model key only
through S3), its own KMS-encrypted log group,
a dead-letter queue for failed asynchronous invocations, X-Ray tracing, reserved
concurrency, and a published version with SnapStart behind the `live` alias. SnapStart for
Python supports arm64 and x86_64 alike (the arm64 exclusion of its Java launch is gone from
the Lambda limits page), so arm64, 20% cheaper per GB-second, stays the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Duration, IgnoreMode
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct

from medfn_infra.acknowledgements import IAM5, INLINE, REASONS, ack, acknowledge_prefix
from medfn_infra.project import DeployedFunction
from medfn_infra.storage import LOG_RETENTION, Storage, grant_key

ALIAS = "live"
RUNTIME = lambda_.Runtime.PYTHON_3_12  # the interpreter `medfn package` builds wheels for
DEFAULT_RESERVED_CONCURRENCY = 5  # when function.toml sets none: caps spend and protects the account
LAMBDA_DOCKERFILE = "containers/lambda.Dockerfile"
# What a Lambda image's build context holds besides the function and its model (as
# containers/lambda.Dockerfile.dockerignore has it).
LAMBDA_IMAGE_CONTEXT = ["pyproject.toml", "README.md", "src/medfn", LAMBDA_DOCKERFILE,
                        f"{LAMBDA_DOCKERFILE}.dockerignore", "containers/copy_function.py"]  # fmt: skip
IMAGE_CONTEXT_NOISE = ["**/__pycache__", "**/*.egg-info", "model_store/build"]
# The image's extras for a function that takes uploads: LAMBDA_DOCKERFILE's default (EXTRAS) and
# `pacs`, with which it delivers its results to a PACS when the stack names one (MEDFN_DICOMWEB_URL)
UPLOAD_IMAGE_EXTRAS = "volumes,aws,pacs"


@dataclass
class FunctionParts:
    function: lambda_.Function
    alias: lambda_.Alias
    role: iam.Role
    dead_letters: sqs.Queue  # failed asynchronous invocations
    timeout_s: int
    upload_queue: sqs.Queue | None = None  # set by pipeline.connect_uploads
    upload_dead_letters: sqs.Queue | None = None
    settle_s: float = 0  # set by pipeline.connect_series: how long a series' stability check waits
    destination: bool = False  # set by pipeline.connect_destination: results go out to a PACS


def secure_queue(scope: Construct, construct_id: str, storage: Storage, **kwargs) -> sqs.Queue:  # type: ignore[no-untyped-def]
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=storage.queue_key,
        data_key_reuse=Duration.hours(1),  # fewer KMS calls; SQS caches the data key this long
        enforce_ssl=True,
        **kwargs,
    )


def log_group(scope: Construct, construct_id: str, storage: Storage, name: str | None = None) -> logs.LogGroup:
    """Every log group: encrypted with the data key, kept for RETENTION["logs"] days."""
    return logs.LogGroup(
        scope, construct_id, encryption_key=storage.data_key, retention=LOG_RETENTION, log_group_name=name
    )


def lambda_function(
    scope: Construct,
    construct_id: str,
    storage: Storage,
    *,
    code: lambda_.Code,
    runtime: lambda_.Runtime = RUNTIME,
    handler: str,
    architecture: lambda_.Architecture,
    memory_mb: int,
    timeout_s: int,
    reserved_concurrency: int,
    environment: dict[str, str],
    description: str,
    snap_start: bool,
) -> FunctionParts:
    role = iam.Role(scope, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    logs_group = log_group(scope, f"{construct_id}Logs", storage)
    logs_group.grant_write(role)
    dead_letters = secure_queue(scope, f"{construct_id}DeadLetters", storage, retention_period=Duration.days(14))
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=runtime,
        handler=handler,
        code=code,
        architecture=architecture,
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_s),
        reserved_concurrent_executions=reserved_concurrency,
        role=role,
        log_group=logs_group,
        tracing=lambda_.Tracing.ACTIVE,
        dead_letter_queue=dead_letters,
        environment=environment,
        description=description[:256],
        snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
    )
    # Lambda sends failed asynchronous events to the dead-letter queue with this role, and SQS
    # encrypts them with the queue key (sqs:SendMessage itself: Function adds it)
    grant_key(role, storage.queue_key, ["kms:GenerateDataKey", "kms:Decrypt"], via="sqs")
    alias = lambda_.Alias(scope, f"{construct_id}Live", alias_name=ALIAS, version=function.current_version)
    return FunctionParts(function, alias, role, dead_letters, timeout_s)


def model_function(
    scope: Construct, deployed: DeployedFunction, storage: Storage, snapstart: bool = True
) -> FunctionParts:
    config = deployed.config
    prefix = storage.model_prefix(config.model)
    environment = {
        "MEDFN_MODEL_STORE": storage.models.s3_url_for_object("models"),
        "MEDFN_MODEL_VERSION": str(deployed.version),
        "MEDFN_MODEL_SHA256": deployed.sha256,
        "MEDFN_WARM_HTTP": "1" if config.http else "0",
    }
    arch = lambda_.Architecture.ARM_64 if config.architecture == "arm64" else lambda_.Architecture.X86_64
    container = config.runtime == "container"
    if container:  # the image is synthesized as an asset and built only by `cdk deploy`
        code: lambda_.Code = container_code(deployed)
    else:
        code = lambda_.Code.from_asset(str(deployed.package))
    parts = lambda_function(
        scope,
        _construct_id(config.name),
        storage,
        code=code,
        runtime=lambda_.Runtime.FROM_IMAGE if container else RUNTIME,
        handler=lambda_.Handler.FROM_IMAGE if container else "handler.handler",
        architecture=arch,
        memory_mb=config.memory_mb,
        timeout_s=config.timeout_s,
        reserved_concurrency=config.reserved_concurrency or DEFAULT_RESERVED_CONCURRENCY,
        environment=environment,
        description=config.description or f"medfn {config.name}",
        snap_start=snapstart and not container,  # SnapStart takes zip packages only
    )
    read_model_prefix(parts.role, storage, prefix)
    return parts


def container_code(deployed: DeployedFunction) -> lambda_.Code:
    """`runtime = "container"`: functions/<name>/Dockerfile where the function has one, else the
    shared containers/lambda.Dockerfile built for it (`FUNCTION=<name>`), with a build context
    of this function, its model and medfn alone, so another model's change does not rebuild it."""
    config, repo = deployed.config, deployed.package.parent.parent  # functions/<name> -> the repository
    platform = Platform.LINUX_ARM64 if config.architecture == "arm64" else Platform.LINUX_AMD64
    if (deployed.package / "Dockerfile").is_file():  # its own: the whole repository but what no image needs
        return lambda_.Code.from_asset_image(
            str(repo),
            file=f"functions/{config.name}/Dockerfile",
            exclude=[".venv", ".git", "dist", ".medfn", "cdk.out", "**/__pycache__", "tests", "benchmarks"],
            platform=platform,
        )
    keep = [*LAMBDA_IMAGE_CONTEXT, f"functions/{config.name}", f"model_store/{config.model}"]
    return lambda_.Code.from_asset_image(
        str(repo),
        file=LAMBDA_DOCKERFILE,
        build_args={"FUNCTION": config.name, **({"EXTRAS": UPLOAD_IMAGE_EXTRAS} if config.uploads else {})},
        ignore_mode=IgnoreMode.DOCKER,
        exclude=["**", *(f"!{path}" for path in keep), *IMAGE_CONTEXT_NOISE],
        platform=platform,
    )


def read_model_prefix(role: iam.Role, storage: Storage, prefix: str) -> None:
    """GetObject under the prefix and ListBucket limited to it: nothing of other models; the
    model key only as S3 decrypts those objects (medfn.serving.store.S3Store)."""
    role.add_to_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[storage.models.arn_for_objects(f"{prefix}/*")])
    )
    acknowledge_prefix(role, storage.models, f"{prefix}/*", REASONS["own_model"], f"role of {role.node.id}")
    grant_key(role, storage.model_key, ["kms:Decrypt"], via="s3")
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[storage.models.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}},
        )
    )


def acknowledge_function(name: str, parts: FunctionParts) -> None:
    no_vpc = REASONS["no_vpc_pacs" if parts.destination else "no_vpc"]
    ack(parts.function, "HIPAA.Security-LambdaInsideVPC", no_vpc, f"function {name}")
    ack(parts.function, "AwsSolutions-L1", REASONS["python_312"], f"function {name}")
    ack(parts.role, INLINE, REASONS["inline_policy"], f"role of function {name}")
    ack(parts.role, f"{IAM5}[Resource::*]", REASONS["xray"], f"role of function {name}")


def catalog_json(functions: list[DeployedFunction]) -> str:
    return json.dumps(
        [
            {"name": f.model.name, "version": str(f.version), "task": f.model.task, "function": f.name}
            for f in functions
        ],
        separators=(",", ":"),
    )


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Function"

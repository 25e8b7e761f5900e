"""GPU scan workers: the uploads (and series) of an `accelerator = "gpu"` function, settled on ECS GPU
instances by `medfn work`, scaled on the depth of its upload queue from zero.

    S3 ObjectCreated under <fn>/ -> its upload queue (and DLQ), as for a Lambda function
    queue depth (visible + in flight + delayed) -> Application Auto Scaling: 0 tasks while it is 0,
        1 from the first message, WORKER_MAX_TASKS past WORKER_BUSY_DEPTH; back to 0 once drained
    a task waiting for a GPU -> the capacity provider's managed scaling starts an instance
        (the Auto Scaling group's minimum is 0); no task for ~15 minutes -> it stops the instance

The task runs the GPU image (containers/gpu.Dockerfile) with `medfn work --device cuda` in place of
the server: the same pipeline code as the Lambda consumer (medfn.sources.queue_worker), several
messages at once so the model's dynamic batcher runs scans and slices of different messages
together. Its role is granted exactly what the Lambda consumer's is (pipeline.grant_consumer,
checked call by call in tests/infra/test_gpu_workers.py). Its security group lets it out only to
S3 and DynamoDB (their gateway endpoints, by prefix list) and to the VPC's SQS endpoint; nothing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from medfn_infra.functions import log_group, read_model_prefix
from medfn_infra.pipeline import consumer_environment, grant_consumer, upload_queue
from medfn_infra.project import DeployedFunction
from medfn_infra.settings import Settings
from medfn_infra.storage import MODEL_PREFIX, Storage


class GpuHosts(Protocol):
    """What the workers share with the GPU service (gpu_service.GpuService): its VPC and cluster."""

    vpc: ec2.Vpc
    subnets: ec2.SubnetSelection
    s3: ec2.IPeer  # S3's prefix list
    endpoint_security: ec2.SecurityGroup  # the interface endpoints' group
    cluster: ecs.Cluster
    capacity: ecs.AsgCapacityProvider
    insights_logs: Construct


WORKER_MAX_TASKS = 2  # GPU instances one function's backlog may start (one task, one GPU each)
WORKER_BUSY_DEPTH = 50  # messages waiting or in hand past which a second task starts
WORKER_CONCURRENCY = 8  # messages one task settles at once (`medfn work --concurrency`)
SCALE_IN_AFTER = Duration.minutes(5)  # the queue empty this long: the tasks stop
STOP_TIMEOUT = Duration.seconds(120)  # SIGTERM to SIGKILL: the messages in hand are finished
DEPTH_PERIOD = Duration.minutes(1)  # SQS publishes its queue metrics each minute
# From the first message to its worker taking it, allowed before the queue-age alarm counts it
# stuck: the scaling alarm's minute, an instance's start, the image's pull, the model's load
# (docs/gpu.md estimates each), and SQS's own delay in publishing a queue that was idle for hours.
GPU_START_S = 20 * 60


@dataclass
class GpuWorker:
    deployed: DeployedFunction
    service: ecs.Ec2Service
    task_role: iam.Role
    execution_role: iam.IRole
    queue: sqs.Queue
    dead_letters: sqs.Queue
    scaling: appscaling.ScalableTarget


def gpu_worker(
    gpu: GpuHosts,
    scope: Construct,
    deployed: DeployedFunction,
    image: ecr_assets.DockerImageAsset,
    storage: Storage,
    settings: Settings,
) -> GpuWorker:
    """The worker service of one GPU function with uploads; its queues sit at the stack's top, with
    the ids a Lambda consumer's have, so a function moved between the two keeps its queue."""
    name, config = deployed.name, deployed.config
    queue, dead_letters = upload_queue(Stack.of(gpu), deployed, storage)
    task_role = iam.Role(scope, "WorkerTaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
    read_model_prefix(task_role, storage, storage.model_prefix(config.model))
    grant_consumer(task_role, deployed, storage, queue, queue_key_sends=True)
    task = ecs.Ec2TaskDefinition(scope, "WorkerTask", network_mode=ecs.NetworkMode.AWS_VPC, task_role=task_role)
    task.add_container(
        "Worker",
        image=ecs.ContainerImage.from_docker_image_asset(image),
        command=[
            "medfn",
            "work",
            "--function",
            name,
            "--device",
            "cuda",
            "--concurrency",
            str(WORKER_CONCURRENCY),
        ],  # fmt: skip
        gpu_count=1,
        memory_reservation_mib=config.memory_mb,
        environment={
            "MEDFN_MODEL_STORE": storage.models.s3_url_for_object(MODEL_PREFIX),
            "MEDFN_MODEL_VERSION": str(deployed.version),
            "MEDFN_MODEL_SHA256": deployed.sha256,
            "MEDFN_REQUIRE_CUDA": "1",  # on a GPU host a CPU fallback would be a slow outage
            "AWS_DEFAULT_REGION": Stack.of(gpu).region,
            "MEDFN_QUEUE_URL": queue.queue_url,
            **consumer_environment(deployed, storage, queue),
        },
        logging=ecs.LogDrivers.aws_logs(
            stream_prefix=f"{name}-worker", log_group=log_group(scope, "WorkerLogs", storage)
        ),
        stop_timeout=STOP_TIMEOUT,
    )
    security = ec2.SecurityGroup(
        scope,
        "WorkerSecurity",
        vpc=gpu.vpc,
        allow_all_outbound=False,
        description=f"GPU scan worker {name}: no inbound; out to S3, DynamoDB and the SQS endpoint only",
    )
    security.add_egress_rule(gpu.s3, ec2.Port.tcp(443), "S3 (scans, results, the model) through its gateway endpoint")
    security.add_egress_rule(
        ec2.Peer.prefix_list(settings.gpu_dynamodb_prefix_list),
        ec2.Port.tcp(443),
        "DynamoDB (status and series records) through its gateway endpoint",
    )
    security.connections.allow_to(gpu.endpoint_security, ec2.Port.tcp(443), "the SQS endpoint (its upload queue)")
    service = ecs.Ec2Service(
        scope,
        "WorkerService",
        cluster=gpu.cluster,
        task_definition=task,
        desired_count=0,  # nothing runs until a message arrives: the scaling below starts it
        capacity_provider_strategies=[
            ecs.CapacityProviderStrategy(capacity_provider=gpu.capacity.capacity_provider_name, weight=1)
        ],
        vpc_subnets=gpu.subnets,
        security_groups=[security],
        min_healthy_percent=0,  # a deployment stops the old task first: no second GPU for a rollout
        max_healthy_percent=100,
        circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
    )
    service.node.add_dependency(storage.model_deployment)
    service.node.add_dependency(gpu.insights_logs)
    assert task.execution_role is not None  # the image asset gave it one to pull with
    scaling = _scale_on_depth(scope, gpu.cluster, service, queue)
    return GpuWorker(deployed, service, task_role, task.execution_role, queue, dead_letters, scaling)


def queue_depth(queue: sqs.IQueue) -> cloudwatch.MathExpression:
    """Messages waiting, in hand, or delayed (a series' stability check): zero only when drained."""
    metric = {"period": DEPTH_PERIOD, "statistic": "Maximum"}
    return cloudwatch.MathExpression(
        expression="visible + in_flight + delayed",
        using_metrics={
            "visible": queue.metric_approximate_number_of_messages_visible(**metric),  # type: ignore[arg-type]
            "in_flight": queue.metric_approximate_number_of_messages_not_visible(**metric),  # type: ignore[arg-type]
            "delayed": queue.metric("ApproximateNumberOfMessagesDelayed", **metric),  # type: ignore[arg-type]
        },
        period=DEPTH_PERIOD,
        label=f"{queue.node.id} depth",
    )


def _scale_on_depth(
    scope: Construct, cluster: ecs.ICluster, service: ecs.Ec2Service, queue: sqs.IQueue
) -> appscaling.ScalableTarget:
    """Exact task counts by depth: 0 at 0 (after SCALE_IN_AFTER of it), 1 from the first message,
    WORKER_MAX_TASKS from WORKER_BUSY_DEPTH. Out on one minute's datapoint; a queue that published
    nothing (SQS stops an empty queue's metrics after hours) counts as empty for scaling in."""
    target = appscaling.ScalableTarget(
        scope,
        "WorkerScaling",
        service_namespace=appscaling.ServiceNamespace.ECS,
        resource_id=f"service/{cluster.cluster_name}/{service.service_name}",
        scalable_dimension="ecs:service:DesiredCount",
        min_capacity=0,
        max_capacity=WORKER_MAX_TASKS,
    )
    target.node.add_dependency(service)
    depth = queue_depth(queue)
    out = appscaling.StepScalingAction(
        scope,
        "ScaleOut",
        scaling_target=target,
        adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
        metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        cooldown=Duration.minutes(1),
    )
    out.add_adjustment(adjustment=1, lower_bound=0, upper_bound=WORKER_BUSY_DEPTH - 1)
    out.add_adjustment(adjustment=WORKER_MAX_TASKS, lower_bound=WORKER_BUSY_DEPTH - 1)
    scale_in = appscaling.StepScalingAction(
        scope,
        "ScaleIn",
        scaling_target=target,
        adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
        metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        cooldown=SCALE_IN_AFTER,
    )
    scale_in.add_adjustment(adjustment=0, upper_bound=0)
    for construct_id, action, threshold, comparison, periods, missing in (
        ("DepthAboveZero", out, 1, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD, 1,
         cloudwatch.TreatMissingData.NOT_BREACHING),
        ("DepthZero", scale_in, 0, cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
         int(SCALE_IN_AFTER.to_minutes()), cloudwatch.TreatMissingData.BREACHING),
    ):  # fmt: skip
        alarm = cloudwatch.Alarm(
            scope,
            construct_id,
            metric=depth,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            treat_missing_data=missing,
            alarm_description=f"scales the GPU scan worker of {queue.node.id} (queue depth {comparison.name.lower()} "
            f"{threshold}); not a fault alarm",
        )
        alarm.add_alarm_action(actions.ApplicationScalingAction(action))
    return target

"""The GPU service: `accelerator = "gpu"` functions on ECS, on EC2 GPU instances.

Lambda has no GPUs, and the task routes are synchronous, so each GPU function runs as an ECS
service of `containers/gpu.Dockerfile` (`medfn serve`, dynamic batching on) on g6.xlarge
instances (one NVIDIA L4 each, one task per GPU), in isolated subnets of its own VPC. An
internal Network Load Balancer gives each function a listener port, and the REST API reaches
it through a VPC link with HTTP proxy integrations on the same routes a Lambda function gets.

TLS end to end: API Gateway -> NLB over TLS with an ACM certificate (MEDFN_GPU_CERTIFICATE_ARN,
checked by API Gateway against MEDFN_GPU_DOMAIN), NLB -> task over TLS again (target groups of
protocol TLS; the task serves HTTPS with a key it makes at start, containers/gpu_serve_tls.py).
No setting turns either hop into plaintext: a GPU function without them is refused at synth.
The VPC has no internet gateway and no NAT: hosts and tasks reach AWS through VPC endpoints
alone (S3 through its gateway endpoint, ECS, ECR and CloudWatch Logs through interface
endpoints), and their security groups let out exactly that.
SageMaker asynchronous endpoints scale to zero but answer through S3 and a notification,
which the synchronous routes cannot return (docs/gpu.md).

A GPU function with uploads (`[triggers] uploads = true`, a `[series]` too) also gets GPU scan
workers (gpu_workers.py): `medfn work` on its upload queue, scaled from zero on the queue's depth.
A GPU function without HTTP routes gets no load balancer, listener or certificate.

Nothing here is created unless a function asks for a GPU: the VPC's interface endpoints, the
load balancer and the instances cost money every hour they exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, IgnoreMode, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from constructs import Construct

from medfn_infra.acknowledgements import IAM5, INLINE, REASONS, ack
from medfn_infra.api import IntegrationFor
from medfn_infra.functions import UPLOAD_IMAGE_EXTRAS, log_group, read_model_prefix
from medfn_infra.gpu_workers import WORKER_MAX_TASKS, GpuWorker, gpu_worker
from medfn_infra.project import DeployedFunction
from medfn_infra.settings import Settings
from medfn_infra.storage import MODEL_PREFIX, Storage

# The VPC's range (no security group rule names it: the groups reference each other).
VPC_CIDR = "10.80.0.0/16"
INSTANCE_TYPE = "g6.xlarge"  # 1 NVIDIA L4 (24 GB), 4 vCPUs, 16 GiB: cheaper per hour than g5.xlarge (A10G)
CONTAINER_PORT = 8080  # `medfn serve --port` in containers/gpu.Dockerfile
FIRST_LISTENER_PORT = 8001  # one NLB port per GPU function, in discovery (name) order
READY_PATH = "/v2/health/ready"  # 503 until the model is loaded and verified
# Where containers/gpu_serve_tls.py writes the task's key and self-signed certificate at start.
TASK_TLS_DIR = "/srv/.medfn/tls"
NLB_LOG_PREFIX = "gpu-nlb"  # its access logs, under the access-log bucket
ROOT_VOLUME_GIB = 60  # the CUDA and cuDNN layers alone are several GB; the AMI's 30 GiB is tight
# API Gateway's default integration timeout; longer waits need a quota increase per account.
MAX_INTEGRATION_TIMEOUT_S = 29
# The image's build context, as containers/gpu.Dockerfile.dockerignore has it but with only
# this function and its model, so another model's change does not rebuild and redeploy it.
IMAGE_CONTEXT = ["pyproject.toml", "README.md", "src/medfn", "containers/gpu.Dockerfile",
                 "containers/gpu.Dockerfile.dockerignore", "containers/copy_function.py",
                 "containers/gpu_serve_tls.py"]  # fmt: skip
CONTEXT_NOISE = ["**/__pycache__", "**/*.egg-info", "model_store/build"]
# hosts, tasks, the NLB and the endpoints: no route to the internet, none to or from it
PRIVATE_SUBNETS = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
# What the hosts reach besides S3 (ECR's image layers), each through an interface endpoint:
# the ECS agent (register, poll for tasks, telemetry and Container Insights), image pulls and
# the containers' logs (the awslogs driver runs on the host).
INTERFACE_ENDPOINTS = {
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}
# What a GPU service needs at synth: no default is secure, so none is assumed. The TLS pair for
# functions with HTTP routes, S3's prefix list for every one, DynamoDB's for those with uploads.
REQUIRED_SETTINGS = {
    "gpu_certificate_arn": "MEDFN_GPU_CERTIFICATE_ARN (an ACM certificate in the stack's region that API "
    "Gateway trusts: issued by ACM, or imported and signed by a public CA)",
    "gpu_domain": "MEDFN_GPU_DOMAIN (the name that certificate is for; it need not resolve)",
    "gpu_s3_prefix_list": "MEDFN_GPU_S3_PREFIX_LIST (S3's managed prefix list: aws ec2 describe-managed-prefix-lists "
    "--filters Name=prefix-list-name,Values=com.amazonaws.<region>.s3 --query 'PrefixLists[0].PrefixListId')",
    "gpu_dynamodb_prefix_list": "MEDFN_GPU_DYNAMODB_PREFIX_LIST (DynamoDB's managed prefix list, for the scan "
    "workers: the same command with com.amazonaws.<region>.dynamodb)",
}
SERVING_SETTINGS = ("gpu_certificate_arn", "gpu_domain")
WORKER_SETTINGS = ("gpu_dynamodb_prefix_list",)


@dataclass
class GpuFunction:
    deployed: DeployedFunction
    service: ecs.Ec2Service
    task_role: iam.Role
    execution_role: iam.IRole
    listener: elbv2.NetworkListener
    listener_port: int


class GpuService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        functions: list[DeployedFunction],
        storage: Storage,
        settings: Settings,
    ) -> None:
        super().__init__(scope, construct_id)
        require_gpu_settings(settings, functions)
        self.settings = settings
        self.serving = [f for f in functions if f.config.http]
        self.working = [f for f in functions if f.config.uploads]
        self.subnets = PRIVATE_SUBNETS
        self.s3 = ec2.Peer.prefix_list(settings.gpu_s3_prefix_list)
        self.vpc = self._vpc(storage)
        if self.working:  # status and series records (free, like S3's); the queue through an interface endpoint
            self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.endpoint_security = self._endpoints()
        self.cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        # Container Insights makes this group on first use, unencrypted and with its own retention:
        # declared first, it writes into ours
        self.insights_logs = log_group(
            self, "InsightsLogs", storage, name=f"/aws/ecs/containerinsights/{self.cluster.cluster_name}/performance"
        )
        # one GPU per task: a served function's task and room to roll out its next; a worker's tasks
        self.hosts = self._hosts(2 * len(self.serving) + WORKER_MAX_TASKS * len(self.working))
        self.hosts.node.add_dependency(self.insights_logs)
        # managed scaling starts an instance for each task waiting for a GPU, and stops idle ones
        self.capacity = ecs.AsgCapacityProvider(self, "Capacity", auto_scaling_group=self.hosts)
        self.cluster.add_asg_capacity_provider(self.capacity)
        self._drop_agent_log_grant()
        self._scopes: dict[str, Construct] = {}
        self._images: dict[str, ecr_assets.DockerImageAsset] = {}
        self.balancer: elbv2.NetworkLoadBalancer | None = None
        if self.serving:
            self._front(storage)
        self.functions = {
            f.name: self._function(f, storage, FIRST_LISTENER_PORT + i) for i, f in enumerate(self.serving)
        }
        self.workers: dict[str, GpuWorker] = {
            f.name: gpu_worker(self, self._scope(f.name), f, self._image(f), storage, settings) for f in self.working
        }

    def _front(self, storage: Storage) -> None:
        """The internal NLB and the REST API's VPC link to it: functions with HTTP routes only."""
        # The NLB's group has no inbound rule, and PrivateLink traffic (API Gateway's VPC link) is
        # exempt from inbound rules: the VPC link is the only way in. Its outbound rules are the
        # tasks' ports alone. (An NLB takes security groups only when created with them: hence a new
        # construct id, which replaces an NLB deployed before it had one, and its VPC link.)
        self.balancer_security = ec2.SecurityGroup(
            self,
            "BalancerSecurity",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="GPU NLB: in only through the VPC link, out only to the GPU tasks",
        )
        self.balancer = elbv2.NetworkLoadBalancer(
            self,
            "PrivateBalancer",
            vpc=self.vpc,
            internet_facing=False,
            vpc_subnets=PRIVATE_SUBNETS,
            cross_zone_enabled=True,
            security_groups=[self.balancer_security],
            enforce_security_group_inbound_rules_on_private_link_traffic=False,
        )
        self._log_access(storage)  # NLBs write access logs for TLS listeners (all of ours)
        self.vpc_link = apigw.VpcLink(
            self, "VpcLink", targets=[self.balancer], description="medfn REST API -> GPU services"
        )

    def _scope(self, name: str) -> Construct:
        """The construct of one GPU function: its image, its server, its worker."""
        if name not in self._scopes:
            self._scopes[name] = Construct(self, _construct_id(name))
        return self._scopes[name]

    def _image(self, deployed: DeployedFunction) -> ecr_assets.DockerImageAsset:
        if deployed.name not in self._images:
            self._images[deployed.name] = _image(self._scope(deployed.name), deployed)
        return self._images[deployed.name]

    def _vpc(self, storage: Storage) -> ec2.Vpc:
        return ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=2,
            # no internet gateway and no NAT gateway: out only through the endpoints below
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20),
            ],
            restrict_default_security_group=True,  # every resource here has its own group
            # model reads and ECR's image layers (served from S3)
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            flow_logs={
                "FlowLogs": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group(self, "FlowLogs", storage)),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )

    def _endpoints(self) -> ec2.SecurityGroup:
        """The interface endpoints the hosts use, in both subnets, behind one group that admits
        the hosts' group on 443 and nothing else (not the VPC's range, CDK's default)."""
        security = ec2.SecurityGroup(
            self,
            "EndpointSecurity",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="GPU VPC interface endpoints: in from the GPU hosts on 443 only",
        )
        endpoints = dict(INTERFACE_ENDPOINTS)
        if self.working:
            endpoints["Sqs"] = ec2.InterfaceVpcEndpointAwsService.SQS  # the workers' upload queues
        for construct_id, service in endpoints.items():
            self.vpc.add_interface_endpoint(
                f"{construct_id}Endpoint",
                service=service,
                subnets=PRIVATE_SUBNETS,
                security_groups=[security],
                open=False,
                private_dns_enabled=True,  # the SDKs' and the agent's usual names resolve to the endpoint
            )
        return security

    def _log_access(self, storage: Storage) -> None:
        """NLB access logs to the access-log bucket, delivered by CloudWatch's log delivery
        (aws-cdk-lib's log_access_logs wants a concrete region at synth; this stack has none)."""
        bucket, prefix = storage.access_logs, NLB_LOG_PREFIX
        assert self.balancer is not None
        delivery = iam.ServicePrincipal("delivery.logs.amazonaws.com")
        source = {
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"},
        }
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[delivery],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{prefix}/AWSLogs/{Aws.ACCOUNT_ID}/*")],
                conditions={
                    **source,
                    "StringEquals": {**source["StringEquals"], "s3:x-amz-acl": "bucket-owner-full-control"},
                },
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[delivery], actions=["s3:GetBucketAcl"], resources=[bucket.bucket_arn], conditions=source
            )
        )
        for key, value in (("enabled", "true"), ("bucket", bucket.bucket_name), ("prefix", prefix)):
            self.balancer.set_attribute(f"access_logs.s3.{key}", value)
        assert bucket.policy is not None
        self.balancer.node.add_dependency(bucket.policy)

    def _drop_agent_log_grant(self) -> None:
        """aws-cdk-lib gives every ECS host logs:CreateLogStream and logs:PutLogEvents on "*",
        for agents that ship their own logs; ours keep theirs on the host, and containers log
        with their execution role (awslogs), so the hosts lose that grant."""
        policy = self.host_role.node.find_child("DefaultPolicy")
        document = Stack.of(self).resolve(policy.document)  # type: ignore[attr-defined]
        statements = []
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            kept = [a for a in actions if not a.startswith("logs:")]
            if kept:
                statements.append({**statement, "Action": kept if len(kept) > 1 else kept[0]})
        policy.node.default_child.add_property_override(  # type: ignore[union-attr]
            "PolicyDocument", {**document, "Statement": statements}
        )

    def _host_security(self) -> ec2.SecurityGroup:
        """No inbound; out only on 443, to the interface endpoints' group (ECS, ECR, CloudWatch
        Logs) and to S3's prefix list (image layers, through the gateway endpoint). The VPC's DNS
        resolver, NTP and instance metadata are link-local services that groups do not filter."""
        security = ec2.SecurityGroup(
            self,
            "HostSecurity",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="GPU hosts: no inbound; out to the VPC endpoints only",
        )
        security.connections.allow_to(
            self.endpoint_security, ec2.Port.tcp(443), "ECS, ECR and CloudWatch Logs endpoints"
        )
        security.add_egress_rule(self.s3, ec2.Port.tcp(443), "S3 (ECR image layers) through its gateway endpoint")
        return security

    def _hosts(self, tasks: int) -> autoscaling.AutoScalingGroup:
        self.host_role = iam.Role(self, "HostRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
        user_data = ec2.UserData.for_linux()
        # tasks get credentials from their task role only, never from the instance's metadata
        user_data.add_commands("echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config")
        # the agent offers GPUs to tasks only with this on (the GPU AMI sets it; a custom AMI may not)
        user_data.add_commands("echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config")
        template = ec2.LaunchTemplate(
            self,
            "HostTemplate",
            instance_type=ec2.InstanceType(INSTANCE_TYPE),
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(
                ecs.AmiHardwareType.GPU
            ),  # NVIDIA driver, container toolkit
            role=self.host_role,
            user_data=user_data,
            security_group=self._host_security(),
            require_imdsv2=True,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        ROOT_VOLUME_GIB, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        return autoscaling.AutoScalingGroup(
            self,
            "Hosts",
            vpc=self.vpc,
            vpc_subnets=PRIVATE_SUBNETS,
            launch_template=template,
            min_capacity=0,
            max_capacity=tasks,  # one GPU per task, g6.xlarge has one
            cooldown=Duration.minutes(5),
        )

    def _function(self, deployed: DeployedFunction, storage: Storage, listener_port: int) -> GpuFunction:
        name, config = deployed.name, deployed.config
        scope = self._scope(name)
        task_role = iam.Role(scope, "TaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
        read_model_prefix(task_role, storage, storage.model_prefix(config.model))
        task = ecs.Ec2TaskDefinition(scope, "Task", network_mode=ecs.NetworkMode.AWS_VPC, task_role=task_role)
        task.add_container(
            "Server",
            image=ecs.ContainerImage.from_docker_image_asset(self._image(deployed)),
            gpu_count=1,
            memory_reservation_mib=config.memory_mb,
            environment={
                "MEDFN_MODEL_STORE": storage.models.s3_url_for_object(MODEL_PREFIX),
                "MEDFN_MODEL_VERSION": str(deployed.version),
                "MEDFN_MODEL_SHA256": deployed.sha256,
                # on a GPU host a CPU fallback would be a slow outage: be not-ready instead
                "MEDFN_REQUIRE_CUDA": "1",
                "AWS_DEFAULT_REGION": Stack.of(self).region,
            },
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix=name, log_group=log_group(scope, "Logs", storage)),
            # the CUDA base image has no curl; the image's Python fails on a 503, and checks the
            # certificate the task made at start (it names 127.0.0.1)
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", _READY_CHECK], start_period=Duration.minutes(3)
            ),
        )
        security = ec2.SecurityGroup(
            scope,
            "Security",
            vpc=self.vpc,
            allow_all_outbound=False,
            description=f"GPU service {name}: in from the NLB only, out to S3 only",
        )
        # in: the NLB's group (its forwarded requests and health checks, TLS), nothing else
        security.connections.allow_from(self.balancer_security, ec2.Port.tcp(CONTAINER_PORT), "from the internal NLB")
        # out: the model bucket over TLS, through the S3 gateway endpoint (S3's prefix list alone)
        security.add_egress_rule(self.s3, ec2.Port.tcp(443), "the model bucket (S3) over TLS")
        service = ecs.Ec2Service(
            scope,
            "Service",
            cluster=self.cluster,
            task_definition=task,
            desired_count=1,
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=self.capacity.capacity_provider_name, weight=1)
            ],
            vpc_subnets=PRIVATE_SUBNETS,
            security_groups=[security],
            min_healthy_percent=100,  # a new task must be ready before the old one stops
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.minutes(5),  # a first pull of the CUDA image takes minutes
        )
        service.node.add_dependency(storage.model_deployment)  # the model must be in the bucket first
        service.node.add_dependency(self.insights_logs)
        # TLS from API Gateway to the NLB, with the deployment's certificate (TLS 1.3 and 1.2)
        assert self.balancer is not None
        listener = self.balancer.add_listener(
            f"{_construct_id(name)}Listener",
            port=listener_port,
            protocol=elbv2.Protocol.TLS,
            certificates=[elbv2.ListenerCertificate.from_arn(self.settings.gpu_certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
        )
        # and TLS again from the NLB to the task, whose certificate the NLB does not validate
        listener.add_targets(
            f"{_construct_id(name)}Targets",
            port=CONTAINER_PORT,
            protocol=elbv2.Protocol.TLS,
            targets=[service],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTPS, path=READY_PATH, interval=Duration.seconds(15)
            ),
            deregistration_delay=Duration.seconds(30),  # requests are seconds long at most
        )
        assert task.execution_role is not None  # the image asset gave it one to pull with
        return GpuFunction(deployed, service, task_role, task.execution_role, listener, listener_port)

    def integration_for(self, name: str) -> IntegrationFor:
        """(method, route path) -> an HTTP proxy integration to that route on the function's port."""
        port, timeout_s = self.functions[name].listener_port, self.functions[name].deployed.config.timeout_s
        # over the VPC link the host is not looked up: it is the Host header and the name API
        # Gateway checks the NLB's certificate against
        host = self.settings.gpu_domain

        def integration(method: str, path: str) -> apigw.Integration:
            # the container serves the REST API's own paths, so each route forwards to itself
            parameters = {f"integration.request.path.{p}": f"method.request.path.{p}" for p in _path_parameters(path)}
            return apigw.Integration(
                type=apigw.IntegrationType.HTTP_PROXY,
                integration_http_method=method,
                uri=f"https://{host}:{port}{path}",
                options=apigw.IntegrationOptions(
                    connection_type=apigw.ConnectionType.VPC_LINK,
                    vpc_link=self.vpc_link,
                    request_parameters=parameters,
                    timeout=Duration.seconds(min(timeout_s, MAX_INTEGRATION_TIMEOUT_S)),
                ),
            )

        return integration


def require_gpu_settings(settings: Settings, functions: list[DeployedFunction]) -> None:
    needed = [name for name in REQUIRED_SETTINGS if name not in SERVING_SETTINGS + WORKER_SETTINGS]
    needed += list(SERVING_SETTINGS) if any(f.config.http for f in functions) else []
    needed += list(WORKER_SETTINGS) if any(f.config.uploads for f in functions) else []
    missing = [REQUIRED_SETTINGS[name] for name in needed if not getattr(settings, name)]
    if missing:
        names = ", ".join(f.name for f in functions)
        raise ValueError(
            f'accelerator = "gpu" ({names}): the GPU service is TLS end to end and reaches AWS only through '
            f"VPC endpoints, and needs at synth {'; '.join(missing)}. Set each as an environment variable for "
            "`medfn synth`, or as CDK context medfn:<name in lower case without MEDFN_> (docs/deploy.md, Security)"
        )


def acknowledge_gpu_service(gpu: GpuService) -> None:
    if gpu.balancer is not None:
        ack(
            gpu.balancer,
            "HIPAA.Security-ELBDeletionProtectionEnabled",
            REASONS["nlb_no_deletion_protection"],
            "the GPU services' internal NLB",
        )
    ack(gpu.hosts, "AwsSolutions-AS3", REASONS["asg_notifications"], "the GPU hosts' Auto Scaling group")
    flow_logs_role = gpu.vpc.node.find_child("FlowLogs").node.find_child("IAMRole")
    ack(flow_logs_role, INLINE, REASONS["inline_policy"], "the VPC flow logs' role")
    host_role = gpu.node.find_child("HostRole")
    ack(host_role, INLINE, REASONS["inline_policy"], "role of the GPU hosts")
    for rule in (f"{IAM5}[Resource::*]", f"{IAM5}[Action::ecs:Submit*]"):
        ack(host_role, rule, REASONS["ecs_agent"], "role of the GPU hosts")
    for name, function in gpu.functions.items():
        ack(function.task_role, INLINE, REASONS["inline_policy"], f"task role of GPU function {name}")
        ack(function.execution_role, INLINE, REASONS["inline_policy"], f"execution role of GPU function {name}")
        ack(
            function.execution_role,
            f"{IAM5}[Resource::*]",
            REASONS["ecr_token"],
            f"execution role of GPU function {name}",
        )
        ack(
            function.service.task_definition,
            "AwsSolutions-ECS2",
            REASONS["task_environment"],
            f"task of GPU function {name}",
        )
    for name, worker in gpu.workers.items():
        subject = f"GPU scan worker {name}"
        ack(worker.task_role, INLINE, REASONS["inline_policy"], f"task role of {subject}")
        ack(worker.execution_role, INLINE, REASONS["inline_policy"], f"execution role of {subject}")
        ack(worker.execution_role, f"{IAM5}[Resource::*]", REASONS["ecr_token"], f"execution role of {subject}")
        ack(worker.service.task_definition, "AwsSolutions-ECS2", REASONS["task_environment"], f"task of {subject}")


def _image(scope: Construct, deployed: DeployedFunction) -> ecr_assets.DockerImageAsset:
    """containers/gpu.Dockerfile for this function; synthesized as an asset, built by `cdk deploy`."""
    name, model = deployed.name, deployed.config.model
    keep = [*IMAGE_CONTEXT, f"functions/{name}", f"model_store/{model}"]
    return ecr_assets.DockerImageAsset(
        scope,
        "Image",
        directory=str(deployed.package.parent.parent),  # the repository: functions/<name> -> ..
        file="containers/gpu.Dockerfile",
        # `aws` adds boto3, which the S3 model store needs; `dicom` is the image's default; a function
        # with uploads runs the scan pipeline too (`medfn work`): a Lambda image's extras
        build_args={
            "FUNCTION": name,
            "EXTRAS": f"dicom,{UPLOAD_IMAGE_EXTRAS}" if deployed.config.uploads else "dicom,aws",
        },
        platform=ecr_assets.Platform.LINUX_AMD64,  # the CUDA images and onnxruntime-gpu wheels are x86_64
        ignore_mode=IgnoreMode.DOCKER,
        exclude=["**", *(f"!{path}" for path in keep), *CONTEXT_NOISE],
    )


# The container's health check: GET the ready route over HTTPS, verifying the task's own certificate.
_READY_CHECK = (
    "import ssl, urllib.request; urllib.request.urlopen("
    f"'https://127.0.0.1:{CONTAINER_PORT}{READY_PATH}', "
    f"context=ssl.create_default_context(cafile='{TASK_TLS_DIR}/cert.pem'), timeout=4)"
)


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))

"""The REST API (API Gateway v1: API keys and usage plans exist only there).

Each model's task route and Open Inference Protocol routes go to its function: the `live`
alias of a Lambda function, or the GPU service over a VPC link; a function that takes uploads
also takes STOW-RS there (`POST /v1/models/{model}/dicomweb/studies[/{study}]`, docs/pacs.md).
The catalog, uploads and server-level routes go to the platform function. Every route but
health wants an API key (the usage plan it counts against) and an authorizer: IAM (SigV4) by
default, a Cognito user pool with MEDFN_AUTH=cognito, none with MEDFN_AUTH=api_key. The health
routes want neither, so they reach no function that does real work: live is a mock integration,
ready a small function of its own. The stage is throttled as a whole and per health route, and
a WAFv2 web ACL with per-IP rate rules sits in front of it (MEDFN_WAF=0 removes it). Tiers from
infra/tiers.toml become usage plans. A body over what Lambda takes is a 413 that says how to
send it instead (REQUEST_TOO_LARGE, below).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from medfn.dicomweb.multipart import TOO_LARGE_HINT
from medfn_infra.acknowledgements import IAM4, IAM5, REASONS, ack
from medfn_infra.functions import log_group
from medfn_infra.project import DeployedFunction, Project
from medfn_infra.settings import Settings
from medfn_infra.storage import Storage

STAGE = "prod"
# (HTTP method, route path) -> the integration serving that route; an HTTP backend needs the
# path, a Lambda alias answers every route of its function through one integration.
IntegrationFor = Callable[[str, str], apigw.Integration]
# Bodies API Gateway passes to Lambda as base64 (scans, DICOM, tensors, multipart forms, STOW-RS's
# multipart/related), and answers it decodes from base64 for a client whose first Accept is one of
# them: the STOW-RS answer, application/dicom+json, leaves the function (Mangum) base64-encoded.
BINARY_MEDIA_TYPES = [
    "image/png",
    "image/jpeg",
    "application/dicom",
    "multipart/form-data",
    "application/octet-stream",
    "multipart/related",
    "application/dicom+json",
]
# A binary body reaches Lambda base64-encoded (4/3 of its size) inside an event that must fit
# Lambda's synchronous payload (6,291,556 bytes) with its headers and request context: about
# 4.7 MB of body, 4.5 MB with room for long headers. API Gateway's own cap is 10 MB. A body in
# between is refused by Lambda, and API Gateway answers REQUEST_TOO_LARGE: ours says what to do.
LAMBDA_BINARY_BODY_MB = 4.5
API_GATEWAY_BODY_MB = 10
TOO_LARGE = (
    f"the request body is too large: a function takes about {LAMBDA_BINARY_BODY_MB:g} MB of binary data per "
    f"request (API Gateway {API_GATEWAY_BODY_MB} MB); {TOO_LARGE_HINT}"
)
PERIODS = {"DAY": apigw.Period.DAY, "WEEK": apigw.Period.WEEK, "MONTH": apigw.Period.MONTH}
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
INVOKE_PATHS = ("/v1/*", "/v2", "/v2/*")  # what the customer invoke policy lets a principal call
# Each health route, for everyone together: probes need a call every few seconds, not more.
HEALTH_RATE_LIMIT, HEALTH_BURST_LIMIT = 10, 20
WAF_WINDOW_S = 300  # a rate-based rule counts each IP's requests over 5 minutes
WAF_HEALTH_LIMIT = 300  # health requests per IP per window: one a second
# One JSON line per request; never bodies or headers, which may hold PHI.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "apiKeyId": "$context.identity.apiKeyId",
    "caller": "$context.identity.caller",
    "time": "$context.requestTimeEpoch",
    "method": "$context.httpMethod",
    "resource": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "waf": "$context.wafResponseCode",
    "error": "$context.error.messageString",
}


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        project: Project,
        storage: Storage,
        settings: Settings,
        routes: dict[str, IntegrationFor],
        platform: lambda_.IFunction,
        health: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        top = max(project.tiers.values(), key=lambda tier: tier.rate_limit)
        self.rate_limit = settings.stage_rate_limit or top.rate_limit
        self.burst_limit = settings.stage_burst_limit or top.burst_limit
        access_logs = log_group(self, "AccessLogs", storage)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{scope.node.id}-api",
            description=(
                "medfn: medical ONNX models as pay-per-call APIs (demonstration models are not for clinical use)"
            ),
            binary_media_types=BINARY_MEDIA_TYPES,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            cloud_watch_role=True,  # the account-level role API Gateway writes execution logs with
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(_json_line(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # full request logging would write scans and notes to logs
                metrics_enabled=True,
                tracing_enabled=True,
                # the whole stage, every caller together: a ceiling under the account's limits
                throttling_rate_limit=self.rate_limit,
                throttling_burst_limit=self.burst_limit,
                method_options={
                    f"{path}/GET": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=HEALTH_RATE_LIMIT,
                        throttling_burst_limit=HEALTH_BURST_LIMIT,
                        logging_level=apigw.MethodLoggingLevel.ERROR,
                        data_trace_enabled=False,
                        metrics_enabled=True,
                    )
                    for path in HEALTH_PATHS
                },
            ),
        )
        self.authorizer = self._authorizer()
        self.keyed: list[apigw.Method] = []  # every method but health: API key and authorizer
        self.health: list[apigw.Method] = []
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        self.infer_model = self.rest_api.add_model(
            "InferenceRequest",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["inputs"],
                properties={"inputs": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1)},
            ),
        )
        self.rest_api.add_gateway_response(
            "RequestTooLarge",
            type=apigw.ResponseType.REQUEST_TOO_LARGE,
            status_code="413",
            # medfn's own error shape, as the function's 413 (medfn.dicomweb.routes) has it
            templates={"application/json": json.dumps({"error": TOO_LARGE})},
        )
        self.dicomweb_roots: dict[str, str] = {}  # function -> its STOW-RS root (what a PACS is given)
        self._platform_routes(_integration(platform), _integration(health))
        models = self.rest_api.root.get_resource("v1").get_resource("models")  # type: ignore[union-attr]
        v2_models = self.rest_api.root.get_resource("v2").add_resource("models")  # type: ignore[union-attr]
        for deployed in project.http_functions:
            self._model_routes(deployed, routes[deployed.name], models, v2_models)
        self._usage_plans(project)
        # API Gateway names its execution log group itself and makes it on first use, with no
        # retention or key: declared here first, the stage writes into ours
        execution_logs = log_group(
            self, "ExecutionLogs", storage, name=f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{STAGE}"
        )
        self.rest_api.deployment_stage.node.add_dependency(execution_logs)
        self.web_acl = self._firewall(storage, top.rate_limit) if settings.waf else None
        self.invoke_policy = self._invoke_policy() if settings.auth == "iam" else None
        CfnOutput(self, "Url", value=self.rest_api.url, description="base URL: append v1/models")

    def _authorizer(self) -> apigw.IAuthorizer | None:
        if self.settings.auth != "cognito":
            return None
        pool = cognito.UserPool.from_user_pool_arn(self, "UserPool", self.settings.user_pool_arn)
        return apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[pool])

    def _keyed(self, resource: apigw.IResource, http_method: str, integration: apigw.Integration, **options) -> None:  # type: ignore[no-untyped-def]
        """A route customers pay for: an API key (its usage plan) and the deployment's authorizer."""
        auth = {
            "iam": {"authorization_type": apigw.AuthorizationType.IAM},
            "cognito": {"authorization_type": apigw.AuthorizationType.COGNITO, "authorizer": self.authorizer},
            "api_key": {"authorization_type": apigw.AuthorizationType.NONE},
        }[self.settings.auth]
        self.keyed.append(resource.add_method(http_method, integration, api_key_required=True, **auth, **options))

    def _platform_routes(self, integration: apigw.Integration, ready: apigw.Integration) -> None:
        v1 = self.rest_api.root.add_resource("v1")
        self._keyed(v1.add_resource("models"), "GET", integration)
        self._keyed(v1.add_resource("uploads"), "POST", integration, **self._validated(content_type=True))
        v2 = self.rest_api.root.add_resource("v2")
        self._keyed(v2, "GET", integration)
        health = v2.add_resource("health")
        # load balancers and uptime checks carry no key: live reaches nothing, ready its own function
        live = apigw.MockIntegration(
            request_templates={"application/json": '{"statusCode": 200}'},
            passthrough_behavior=apigw.PassthroughBehavior.NEVER,
            integration_responses=[
                apigw.IntegrationResponse(status_code="200", response_templates={"application/json": '{"live": true}'})
            ],
        )
        for probe, target in (("live", live), ("ready", ready)):
            self.health.append(
                health.add_resource(probe).add_method(
                    "GET",
                    target,
                    api_key_required=False,
                    authorization_type=apigw.AuthorizationType.NONE,
                    method_responses=[apigw.MethodResponse(status_code="200")] if probe == "live" else None,
                )
            )

    def _model_routes(
        self,
        deployed: DeployedFunction,
        integration: IntegrationFor,
        models: apigw.IResource,
        v2_models: apigw.IResource,
    ) -> None:
        name = deployed.model.name
        v1_model = models.add_resource(name)
        predict = v1_model.add_resource("predict")
        self._keyed(predict, "POST", integration("POST", predict.path), **self._validated(content_type=True))
        if deployed.config.uploads:
            self._stow_routes(deployed, v1_model, integration)
        model = v2_models.add_resource(name)
        version = model.add_resource("versions").add_resource("{version}")
        for base, path_params in ((model, {}), (version, {"method.request.path.version": True})):
            self._keyed(base, "GET", integration("GET", base.path), **self._validated(path_params))
            ready = base.add_resource("ready")
            self._keyed(ready, "GET", integration("GET", ready.path), **self._validated(path_params))
            infer = base.add_resource("infer")
            self._keyed(
                infer,
                "POST",
                integration("POST", infer.path),
                request_models={"application/json": self.infer_model},
                **self._validated(path_params, content_type=True),
            )

    def _stow_routes(self, deployed: DeployedFunction, model: apigw.IResource, integration: IntegrationFor) -> None:
        """STOW-RS (medfn.dicomweb.routes): instances into the function's own upload prefix."""
        root = model.add_resource("dicomweb")
        studies = root.add_resource("studies")
        study = studies.add_resource("{study}")
        for resource, path_params in ((studies, {}), (study, {"method.request.path.study": True})):
            self._keyed(
                resource,
                "POST",
                integration("POST", resource.path),
                **self._validated(path_params, content_type=True),
            )
        self.dicomweb_roots[deployed.name] = self.rest_api.url_for_path(root.path)
        CfnOutput(
            self,
            f"Dicomweb{_pascal(deployed.name)}",
            value=self.dicomweb_roots[deployed.name],
            description=f"the DICOMweb root a PACS sends {deployed.model.name} studies to (STOW-RS)",
        )

    def _validated(self, path_params: dict[str, bool] | None = None, content_type: bool = False) -> dict:  # type: ignore[type-arg]
        parameters = dict(path_params or {})
        if content_type:  # a body without a type cannot be decoded: refuse it at the edge
            parameters["method.request.header.Content-Type"] = True
        return {"request_validator": self.validator, "request_parameters": parameters}

    def _usage_plans(self, project: Project) -> None:
        for tier in project.tiers.values():
            plan = self.rest_api.add_usage_plan(
                f"Tier{tier.name.capitalize()}",
                name=f"{self.rest_api.rest_api_name}-{tier.name}",
                description=tier.description or f"tier {tier.name}",
                throttle=apigw.ThrottleSettings(rate_limit=tier.rate_limit, burst_limit=tier.burst_limit),
                quota=apigw.QuotaSettings(limit=tier.quota, period=PERIODS[tier.period]),
            )
            plan.add_api_stage(stage=self.rest_api.deployment_stage)
            CfnOutput(
                self,
                f"UsagePlan{tier.name.capitalize()}",
                value=plan.usage_plan_id,
                description=f"usage plan of tier {tier.name}",
            )

    def _invoke_policy(self) -> iam.ManagedPolicy:
        """What a customer's IAM principal needs to call the API (docs/deploy.md, Customers)."""
        policy = iam.ManagedPolicy(
            self,
            "InvokePolicy",
            description="medfn: call the model routes of the prod stage (SigV4); an API key is needed too",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[
                        self.rest_api.arn_for_execute_api("*", path, STAGE) for path in ("/v1/*", "/v2", "/v2/*")
                    ],
                )
            ],
        )
        CfnOutput(self, "InvokePolicyArn", value=policy.managed_policy_arn, description="attach to a caller's role")
        return policy

    def _firewall(self, storage: Storage, top_rate: int) -> wafv2.CfnWebACL:
        """Per-IP rate rules: one for the unauthenticated health routes, one for everything.
        The general limit is the top tier's steady rate over the window, so no customer within
        their tier is blocked by it; a flood from one address is."""
        per_ip = self.settings.waf_rate_limit or top_rate * WAF_WINDOW_S
        name = f"{Stack.of(self).stack_name}-api"

        def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=False
            )

        def rate_rule(rule: str, priority: int, limit: int, scope_down: dict | None = None) -> dict:  # type: ignore[type-arg]
            statement: dict = {"limit": limit, "aggregateKeyType": "IP", "evaluationWindowSec": WAF_WINDOW_S}  # type: ignore[type-arg]
            if scope_down:
                statement["scopeDownStatement"] = scope_down
            return {
                "name": rule,
                "priority": priority,
                "action": {"block": {}},
                "statement": {"rateBasedStatement": statement},
                "visibilityConfig": visibility(rule),
            }

        health = {
            "byteMatchStatement": {
                "fieldToMatch": {"uriPath": {}},
                "positionalConstraint": "CONTAINS",
                "searchString": "/v2/health/",
                "textTransformations": [{"priority": 0, "type": "LOWERCASE"}],
            }
        }
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(name),
            rules=[rate_rule("health-per-ip", 0, WAF_HEALTH_LIMIT, health), rate_rule("per-ip", 1, per_ip)],
        )
        wafv2.CfnWebACLAssociation(
            self, "WebAclAssociation", resource_arn=self.rest_api.deployment_stage.stage_arn, web_acl_arn=acl.attr_arn
        )
        # what the web ACL blocked, and nothing else: every request is in the access log already
        logs = log_group(self, "WafLogs", storage, name=f"aws-waf-logs-{name}")
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=logs.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                {"singleHeader": {"Name": header}} for header in ("authorization", "x-api-key", "x-amz-security-token")
            ],
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [
                    {
                        "Behavior": "KEEP",
                        "Requirement": "MEETS_ANY",
                        "Conditions": [{"ActionCondition": {"Action": "BLOCK"}}],
                    }
                ],
            },
        )
        return acl


def acknowledge_api(api: Api) -> None:
    rest_api, stage, settings = api.rest_api, api.rest_api.deployment_stage, api.settings
    for method in api.health:
        subject = f"method GET {method.resource.path}"
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            ack(method, rule, REASONS["health_open"], subject)
    for method in api.keyed:
        subject = f"method {method.http_method} {method.resource.path}"
        if settings.auth == "iam":
            ack(method, "AwsSolutions-COG4", REASONS["iam_not_cognito"], subject)
        elif settings.auth == "api_key":
            for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
                ack(method, rule, REASONS["api_key_only"], subject)
    if api.invoke_policy is not None:
        api_id = Stack.of(rest_api).get_logical_id(rest_api.node.default_child)  # type: ignore[arg-type]
        for path in INVOKE_PATHS:
            arn = f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{api_id}>/{STAGE}/*{path}"
            ack(api.invoke_policy, f"{IAM5}[Resource::{arn}]", REASONS["invoke_policy"], "the customer invoke policy")
    if api.web_acl is None:
        ack(stage, "AwsSolutions-APIG3", REASONS["no_waf"], "stage prod")
    ack(stage, "HIPAA.Security-APIGWCacheEnabledAndEncrypted", REASONS["no_cache"], "stage prod")
    ack(stage, "HIPAA.Security-APIGWSSLEnabled", REASONS["lambda_backend_tls"], "stage prod")
    ack(
        rest_api.node.find_child("CloudWatchRole"),
        f"{IAM4}[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        REASONS["apigw_logs_role"],
        "API Gateway's account-level logging role",
    )


def _integration(function: lambda_.IFunction) -> apigw.LambdaIntegration:
    # allow_test_invoke off: one invoke permission per route instead of two
    return apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)


def lambda_routes(function: lambda_.IFunction) -> IntegrationFor:
    """Every route of a Lambda function through one proxy integration of its alias."""
    integration = _integration(function)
    return lambda _method, _path: integration


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _json_line(fields: dict[str, str]) -> str:
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"

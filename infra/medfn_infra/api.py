"""The REST API (API Gateway v1: API keys and usage plans exist only there).

Each model's task route and Open Inference Protocol routes go to its function: the `live`
alias of a Lambda function, or the GPU service over a VPC link; the catalog, uploads and
server-level routes go to the platform function. Every route wants an API key except
health. Tiers from infra/tiers.toml become usage plans.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import CfnOutput
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from medfn_infra.acknowledgements import ack
from medfn_infra.functions import log_group
from medfn_infra.project import DeployedFunction, Project
from medfn_infra.storage import Storage

STAGE = "prod"
# (HTTP method, route path) -> the integration serving that route; an HTTP backend needs the
# path, a Lambda alias answers every route of its function through one integration.
IntegrationFor = Callable[[str, str], apigw.Integration]
# Bodies API Gateway passes to Lambda as base64 (scans, DICOM, tensors, multipart forms).
BINARY_MEDIA_TYPES = ["image/png", "image/jpeg", "application/dicom", "multipart/form-data", "application/octet-stream"]
PERIODS = {"DAY": apigw.Period.DAY, "WEEK": apigw.Period.WEEK, "MONTH": apigw.Period.MONTH}
# One JSON line per request; never bodies or headers, which may hold PHI.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "apiKeyId": "$context.identity.apiKeyId",
    "time": "$context.requestTimeEpoch",
    "method": "$context.httpMethod",
    "resource": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "error": "$context.error.messageString",
}


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        project: Project,
        storage: Storage,
        routes: dict[str, IntegrationFor],
        platform: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
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
            ),
        )
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
        self._platform_routes(_integration(platform))
        models = self.rest_api.root.get_resource("v1").get_resource("models")  # type: ignore[union-attr]
        v2_models = self.rest_api.root.get_resource("v2").add_resource("models")  # type: ignore[union-attr]
        for deployed in project.http_functions:
            self._model_routes(deployed, routes[deployed.name], models, v2_models)
        self._usage_plans(project)
        CfnOutput(self, "Url", value=self.rest_api.url, description="base URL: append v1/models")

    def _platform_routes(self, integration: apigw.Integration) -> None:
        v1 = self.rest_api.root.add_resource("v1")
        v1.add_resource("models").add_method("GET", integration, api_key_required=True)
        v1.add_resource("uploads").add_method(
            "POST", integration, api_key_required=True, **self._validated(content_type=True)
        )
        v2 = self.rest_api.root.add_resource("v2")
        v2.add_method("GET", integration, api_key_required=True)
        health = v2.add_resource("health")
        for probe in ("live", "ready"):  # load balancers and uptime checks carry no key
            health.add_resource(probe).add_method("GET", integration, api_key_required=False)

    def _model_routes(
        self,
        deployed: DeployedFunction,
        integration: IntegrationFor,
        models: apigw.IResource,
        v2_models: apigw.IResource,
    ) -> None:
        name = deployed.model.name
        predict = models.add_resource(name).add_resource("predict")
        predict.add_method(
            "POST", integration("POST", predict.path), api_key_required=True, **self._validated(content_type=True)
        )
        model = v2_models.add_resource(name)
        version = model.add_resource("versions").add_resource("{version}")
        for base, path_params in ((model, {}), (version, {"method.request.path.version": True})):
            base.add_method("GET", integration("GET", base.path), api_key_required=True, **self._validated(path_params))
            ready = base.add_resource("ready")
            ready.add_method(
                "GET", integration("GET", ready.path), api_key_required=True, **self._validated(path_params)
            )
            infer = base.add_resource("infer")
            infer.add_method(
                "POST",
                integration("POST", infer.path),
                api_key_required=True,
                request_models={"application/json": self.infer_model},
                **self._validated(path_params, content_type=True),
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


def acknowledge_api(api: Api, http_backend: bool = False) -> None:
    rest_api, stage = api.rest_api, api.rest_api.deployment_stage
    for rule, reason in (
        ("AwsSolutions-APIG4", ("callers are identified by API keys tied to usage plans (the pay-per-call "
         "contract); deployments that also need end-user identity add an authorizer in front")),
        ("AwsSolutions-COG4", ("no Cognito user pool: consumers are server-side integrations holding API keys, "
         "not end users signing in")),
    ):  # fmt: skip
        ack(rest_api, rule, f"REST API methods: {reason}")
    ack(
        stage,
        "AwsSolutions-APIG3",
        "stage prod: WAF costs a monthly fee per web ACL and rule at rest; request size and rate are bounded by "
        "usage-plan throttles, API Gateway's 10 MB cap and each function's max_body_bytes",
    )
    ack(
        stage,
        "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
        "stage prod: predictions are per request and may concern a patient; caching them would keep PHI outside "
        "the encrypted stores and bill hourly at rest",
    )
    if http_backend:
        ack(
            stage,
            "HIPAA.Security-APIGWSSLEnabled",
            "stage prod: client certificates prove API Gateway's identity to public HTTP backends; the GPU services "
            "have no public address and are reached only through the VPC link to an internal NLB, and the Lambda "
            "backends are proxy integrations; clients use TLS",
        )
    else:
        ack(
            stage,
            "HIPAA.Security-APIGWSSLEnabled",
            "stage prod: the backend is Lambda proxy integration inside AWS, not an HTTP endpoint, so there is no "
            "backend to present a client certificate to; clients use TLS",
        )
    ack(
        api.rest_api.node.find_child("CloudWatchRole"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:"
        "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        "API Gateway's account-level logging role uses the AWS-maintained policy made for exactly this purpose",
    )


def _integration(function: lambda_.IFunction) -> apigw.LambdaIntegration:
    # allow_test_invoke off: one invoke permission per route instead of two
    return apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)


def lambda_routes(function: lambda_.IFunction) -> IntegrationFor:
    """Every route of a Lambda function through one proxy integration of its alias."""
    integration = _integration(function)
    return lambda _method, _path: integration


def _json_line(fields: dict[str, str]) -> str:
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"

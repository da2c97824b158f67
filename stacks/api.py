"""The HTTP API: API Gateway (REST) in front of the two workflows and the jobs Lambda.

==========================  ==========================================================================
``POST /images``            ``StartSyncExecution`` (Express): the manifest, or the failure's status
``GET /images?prompt=...``  the same, for a prompt (and ``count``) in the query string
``POST /jobs``              ``StartExecution`` (Standard): ``202 {"job_id", "status", "status_url"}``
``GET /jobs/{id}``          the jobs Lambda: status, progress, manifest with fresh presigned URLs
``GET /models``             the jobs Lambda: the models this deployment offers
==========================  ==========================================================================

API Gateway calls Step Functions itself (AWS integrations with the mapping templates of
:mod:`stacks.mapping_templates`): no Lambda sits between a request and the workflow. Request bodies are
validated against the ``ImageRequest`` model, generated from the pydantic model
(:mod:`stacks.request_schema`), and ``GET /images`` must have ``prompt``: an invalid request is answered
400 by API Gateway and never starts an execution. Clients authenticate with an API key (usage plan:
throttle and daily quota) or, with ``auth="iam"``, with SigV4. The stage throttles all clients
together, logs access as JSON and errors, and traces with X-Ray.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import mapping_templates as vtl
from stacks.config import Throttle
from stacks.functions import LOG_RETENTION, FunctionDefaults, PipelineFunction
from stacks.request_schema import to_cdk_json_schema
from stacks.workflow import IMAGE_KEYS

JOBS_API_HANDLER = "image_pipeline.handlers.jobs_api.handler"
STAGE_NAME = "v1"
#: API Gateway's default (and, without a quota increase, maximum) integration timeout.
SYNC_TIMEOUT = Duration.seconds(29)
JSON = "application/json"
CORS_ALLOW_HEADERS = [
    "Content-Type",
    "X-Api-Key",
    "Idempotency-Key",
    "Authorization",
    "X-Amz-Date",
    "X-Amz-Security-Token",
]
ERROR_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="Error",
    type=apigw.JsonSchemaType.OBJECT,
    required=["error", "message"],
    properties={
        "error": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, description="The error's name"),
        "message": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, description="What to change"),
    },
)
#: API Gateway's own errors, in the same shape as the workflow's: {"error", "message"}.
GATEWAY_RESPONSES: dict[str, tuple[apigw.ResponseType, str | None, str]] = {
    "InvalidBody": (
        apigw.ResponseType.BAD_REQUEST_BODY,
        "400",
        '{"error": "InvalidRequest", "message": "$context.error.validationErrorString"}',
    ),
    "InvalidParameters": (
        apigw.ResponseType.BAD_REQUEST_PARAMETERS,
        "400",
        '{"error": "InvalidRequest", "message": $context.error.messageString}',
    ),
    "IntegrationTimeout": (
        apigw.ResponseType.INTEGRATION_TIMEOUT,
        "504",
        json.dumps(
            {
                "error": "Timeout",
                "message": "the images took longer than the API's 29 s limit; ask for fewer images, "
                "or use POST /jobs and poll GET /jobs/{id}",
            }
        ),
    ),
    "Default4xx": (
        apigw.ResponseType.DEFAULT_4_XX,
        None,
        '{"error": "$context.error.responseType", "message": $context.error.messageString}',
    ),
    "Default5xx": (
        apigw.ResponseType.DEFAULT_5_XX,
        None,
        '{"error": "$context.error.responseType", "message": $context.error.messageString}',
    ),
}


def access_log_format() -> apigw.AccessLogFormat:
    """One JSON line per request, with the integration's status and error (no bodies, no prompts)."""
    field = apigw.AccessLogField
    return apigw.AccessLogFormat.custom(
        json.dumps(
            {
                "requestId": field.context_request_id(),
                "requestTime": field.context_request_time(),
                "ip": field.context_identity_source_ip(),
                "apiKeyId": field.context_identity_api_key_id(),
                "caller": field.context_identity_caller(),
                "httpMethod": field.context_http_method(),
                "resourcePath": field.context_resource_path(),
                "status": field.context_status(),
                "responseLength": field.context_response_length(),
                "responseLatency": field.context_response_latency(),
                "integrationStatus": field.context_integration_status(),
                "integrationLatency": field.context_integration_latency(),
                "errorType": field.context_error_response_type(),
                "errorMessage": field.context_error_message(),
                "xrayTraceId": field.context_xray_trace_id(),
            }
        )
    )


class ImageApi(Construct):
    """The REST API, its stage, request model and validator, auth, and the jobs Lambda.

    :param sync_workflow: the EXPRESS state machine (``POST /images``, ``GET /images``).
    :param jobs_workflow: the STANDARD state machine (``POST /jobs``, ``GET /jobs/{id}``).
    :param images_bucket: the jobs Lambda presigns image URLs in it.
    :param defaults: the jobs Lambda's shared code, layers and environment.
    :param request_schema: the draft-4 request schema (:func:`stacks.request_schema.image_request_schema`).
    :param auth: ``"apiKey"`` (API key + usage plan) or ``"iam"`` (SigV4, no key).
    :param throttle: stage rate/burst and, with API keys, the usage plan's daily quota.
    :param cors_origins: origins allowed to call the API from a browser (``*`` for any, none: no CORS).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        sync_workflow: sfn.IStateMachine,
        jobs_workflow: sfn.StateMachine,
        images_bucket: s3.IBucket,
        defaults: FunctionDefaults,
        request_schema: Mapping[str, Any],
        auth: Literal["apiKey", "iam"],
        throttle: Throttle,
        cors_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.auth = auth
        self.cors_origins = list(cors_origins)

        self.jobs_api = PipelineFunction(
            self,
            "JobsApi",
            handler=JOBS_API_HANDLER,
            description="imagegen: GET /jobs/{id} (status, manifest, fresh URLs) and GET /models",
            defaults=defaults,
            timeout=Duration.seconds(20),
            environment={
                "JOBS_STATE_MACHINE_ARN": jobs_workflow.state_machine_arn,
                "SYNC_STATE_MACHINE_ARN": sync_workflow.state_machine_arn,
                **({"CORS_ALLOW_ORIGIN": self.cors_origins[0]} if self.cors_origins else {}),
            },
        )
        #: Every execution of the jobs workflow: the jobs Lambda reads their status and history.
        self.job_executions_arn = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{jobs_workflow.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.jobs_api.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadJobs",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[self.job_executions_arn],
            )
        )
        self.jobs_api.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PresignImageUrls",
                actions=["s3:GetObject"],
                resources=[images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )

        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            description="imagegen: parallel image generation with Amazon Bedrock",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=access_log_format(),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry prompts: keep them out of the logs
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=self.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=CORS_ALLOW_HEADERS,
                max_age=Duration.hours(1),
            )
            if self.cors_origins
            else None,
        )
        #: The API's base URL, ending in "/". Built from the API id and the stage name (not from the
        #: Stage resource), so the web page's settings can refer to it without a dependency cycle.
        stack = Stack.of(self)
        self.url = (
            f"https://{self.rest_api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{STAGE_NAME}/"
        )

        self.validator = self.rest_api.add_request_validator(
            "Validator",
            request_validator_name="body-and-parameters",
            validate_request_body=True,
            validate_request_parameters=True,
        )
        self.request_model = self.rest_api.add_model(
            "ImageRequestModel",
            model_name="ImageRequest",
            content_type=JSON,
            description="An image request (generated from image_pipeline.core.request.ImageRequest)",
            schema=to_cdk_json_schema(request_schema),
        )
        self.error_model = self.rest_api.add_model(
            "ErrorModel", model_name="Error", content_type=JSON, schema=ERROR_SCHEMA
        )
        self._add_gateway_responses()

        self.integration_role = iam.Role(
            self,
            "StartWorkflowsRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="imagegen API: start the sync and jobs workflows",
        )
        sync_workflow.grant_start_sync_execution(self.integration_role)
        jobs_workflow.grant_start_execution(self.integration_role)

        images = self.rest_api.root.add_resource("images")
        images.add_method(
            "POST",
            self._sync_integration(vtl.sync_request_from_body(sync_workflow.state_machine_arn)),
            request_models={JSON: self.request_model},
            method_responses=self._method_responses(vtl.SYNC_STATUSES, ok_model=apigw.Model.EMPTY_MODEL),
            operation_name="GenerateImages",
            **self._auth_options(),
        )
        images.add_method(
            "GET",
            self._sync_integration(vtl.sync_request_from_query(sync_workflow.state_machine_arn)),
            request_parameters={
                "method.request.querystring.prompt": True,
                "method.request.querystring.count": False,
            },
            method_responses=self._method_responses(vtl.SYNC_STATUSES, ok_model=apigw.Model.EMPTY_MODEL),
            operation_name="GenerateImagesFromQuery",
            **self._auth_options(),
        )

        jobs = self.rest_api.root.add_resource("jobs")
        jobs.add_method(
            "POST",
            self._jobs_integration(jobs_workflow.state_machine_arn),
            request_models={JSON: self.request_model},
            request_parameters={"method.request.header.Idempotency-Key": False},
            method_responses=self._method_responses(vtl.JOBS_STATUSES, ok_model=apigw.Model.EMPTY_MODEL),
            operation_name="SubmitJob",
            **self._auth_options(),
        )
        lambda_integration = apigw.LambdaIntegration(self.jobs_api.function)
        jobs.add_resource("{id}").add_method(
            "GET",
            lambda_integration,
            request_parameters={"method.request.path.id": True},
            operation_name="GetJob",
            **self._auth_options(),
        )
        self.rest_api.root.add_resource("models").add_method(
            "GET", lambda_integration, operation_name="ListModels", **self._auth_options()
        )

        self.api_key: apigw.IApiKey | None = None
        self.usage_plan: apigw.UsagePlan | None = None
        if auth == "apiKey":
            self.api_key = self.rest_api.add_api_key(
                "ApiKey", description="imagegen: the first client's key (add more to the usage plan)"
            )
            self.usage_plan = self.rest_api.add_usage_plan(
                "UsagePlan",
                description="imagegen clients: per-key throttle and daily quota",
                throttle=apigw.ThrottleSettings(
                    rate_limit=throttle.rate_limit, burst_limit=throttle.burst_limit
                ),
                quota=apigw.QuotaSettings(limit=throttle.quota_per_day, period=apigw.Period.DAY),
                api_stages=[
                    apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)
                ],
            )
            self.usage_plan.add_api_key(self.api_key)

    # -- pieces ---------------------------------------------------------------------------------

    def _auth_options(self) -> dict[str, Any]:
        if self.auth == "iam":
            return {"authorization_type": apigw.AuthorizationType.IAM, "request_validator": self.validator}
        return {
            "authorization_type": apigw.AuthorizationType.NONE,
            "api_key_required": True,
            "request_validator": self.validator,
        }

    def _cors_headers(self) -> dict[str, bool]:
        if not self.cors_origins:
            return {}
        return {
            "method.response.header.Access-Control-Allow-Origin": True,
            "method.response.header.Vary": True,
        }

    def _method_responses(
        self, statuses: Sequence[str], *, ok_model: apigw.IModel
    ) -> list[apigw.MethodResponse]:
        return [
            apigw.MethodResponse(
                status_code=status,
                response_models={JSON: ok_model if status.startswith("2") else self.error_model},
                response_parameters=self._cors_headers() or None,
            )
            for status in statuses
        ]

    def _start_failed_responses(self, *, jobs: bool) -> list[apigw.IntegrationResponse]:
        """Step Functions' API refused (4xx) or failed (5xx): the status is set by the template."""
        return [
            apigw.IntegrationResponse(
                selection_pattern=r"4\d{2}",
                status_code="400",
                response_templates={JSON: vtl.start_failed_response(self.cors_origins, jobs=jobs)},
            ),
            apigw.IntegrationResponse(
                selection_pattern=r"5\d{2}",
                status_code="503",
                response_templates={JSON: vtl.unavailable_response(self.cors_origins)},
            ),
        ]

    def _sync_integration(self, request_template: str) -> apigw.AwsIntegration:
        return apigw.AwsIntegration(
            service="states",
            action="StartSyncExecution",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=self.integration_role,
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                timeout=SYNC_TIMEOUT,
                request_templates={JSON: request_template},
                integration_responses=[
                    apigw.IntegrationResponse(
                        status_code="200", response_templates={JSON: vtl.sync_response(self.cors_origins)}
                    ),
                    *self._start_failed_responses(jobs=False),
                ],
            ),
        )

    def _jobs_integration(self, state_machine_arn: str) -> apigw.AwsIntegration:
        return apigw.AwsIntegration(
            service="states",
            action="StartExecution",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=self.integration_role,
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_templates={JSON: vtl.jobs_request(state_machine_arn)},
                integration_responses=[
                    apigw.IntegrationResponse(
                        status_code="202",
                        response_templates={JSON: vtl.job_accepted_response(self.cors_origins)},
                    ),
                    *self._start_failed_responses(jobs=True),
                ],
            ),
        )

    def _add_gateway_responses(self) -> None:
        # A gateway response can only carry a fixed header value: with one allowed origin, browsers can
        # read API Gateway's own errors (bad body, missing key, throttled) too.
        headers = {}
        if len(self.cors_origins) == 1:
            origin = self.cors_origins[0]
            headers = {"Access-Control-Allow-Origin": f"'{origin}'"}
        for construct_id, (response_type, status, template) in GATEWAY_RESPONSES.items():
            self.rest_api.add_gateway_response(
                construct_id,
                type=response_type,
                status_code=status,
                templates={JSON: template},
                response_headers=headers or None,
            )

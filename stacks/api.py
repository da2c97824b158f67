"""The HTTP API: API Gateway (REST) in front of one Lambda function that answers every route.

==========================  ==========================================================================
``POST /images``            validate, start a job and wait (``Prefer: wait=N``): the manifest, the failure's
                            status, or ``202`` + ``Location`` when the job takes longer
``GET /images?prompt=...``  the same, with the request's fields in the query string
``POST /jobs``              validate, ``StartExecution`` (Standard): ``202 {"job_id", "status", "status_url"}``
``GET /jobs``               the caller's jobs, newest first (the image index)
``GET /jobs/{id}``          status, progress, manifest with fresh presigned URLs
``GET /jobs/{id}/events``   Server-Sent Events: images as they are stored, then the job's end
``DELETE /jobs/{id}``       cancel a running job (a marker in S3 its steps look for)
``POST /jobs/{id}/retry``   a new job of the images that failed
``GET /models``             the models this deployment offers
==========================  ==========================================================================

Every route is a Lambda proxy integration of the HTTP API function
(``image_pipeline.handlers.http_api``), and the function checks every request before any Step Functions
call: the request's fields (``check_request``, the check of the workflow's first step, so the console,
events and the local server answer the same message), the chosen model's own limits and the
deployment's maximum image count; 400/413/415 with a message naming every field to change. So an
invalid request never starts an execution.

API Gateway validates no request (no request validator): its validator's detailed message
(``$context.error.validationErrorString``) contains double quotes and is not documented as escaped, and a
gateway response is "a non-VTL mapping template ... supporting only simple variable substitutions", so
it cannot be escaped there either
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gatewayResponse-definition.html,
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html,
read 2026-11-30). The ``ImageRequest`` model, generated from the pydantic model
(:mod:`stacks.request_schema`), stays on ``POST /images`` and ``POST /jobs`` as their documentation
(exports, SDKs). See docs/decisions.md. The function's timeout is API Gateway's integration
timeout (29 s); a synchronous route waits for its job a little less (``SYNC_MAX_WAIT_SECONDS``), then
answers 202 with the job, which goes on.
Clients authenticate with an API key (usage plan: throttle and daily quota), with ``auth="iam"`` with
SigV4, or with ``auth="cognito"`` with a signed-in user's ID token (``stacks/sign_in.py``). The stage throttles all clients together, logs access as JSON and errors, and traces with
X-Ray. API Gateway's own errors (missing key, throttling, timeout) are ``{"error", "message"}`` too,
valid JSON whatever their message (:data:`GATEWAY_RESPONSES`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core import time_budget
from image_pipeline.core.index_keys import SEARCH_PARAMETERS
from image_pipeline.functions import HTTP_API

from stacks.config import Throttle
from stacks.functions import LOG_RETENTION, FunctionDefaults, PipelineFunction
from stacks.request_schema import to_cdk_json_schema
from stacks.sign_in import UserSignIn
from stacks.workflow import CANCELLATION_KEYS, IMAGE_KEYS, MANIFEST_KEYS, MASK_CHECK_MEMORY_MB

STAGE_NAME = "v1"
#: API Gateway's default (and, without a quota increase, maximum) integration timeout for a regional
#: REST API; the function gets the same, and waits for a synchronous run a little less.
HTTP_API_TIMEOUT = Duration.seconds(time_budget.API_GATEWAY_INTEGRATION_SECONDS)
#: The longest a synchronous route waits for its job: the function's timeout less its last poll and
#: the time to answer (``image_pipeline.core.time_budget.longest_sync_wait``).
SYNC_MAX_WAIT_SECONDS = math.floor(time_budget.longest_sync_wait(HTTP_API_TIMEOUT.to_seconds()))
JSON = "application/json"
CORS_ALLOW_HEADERS = [
    "Content-Type",
    "X-Api-Key",
    "Idempotency-Key",
    "Prefer",
    "Last-Event-ID",
    "Authorization",
    "X-Amz-Date",
    "X-Amz-Security-Token",
]
#: HTTP statuses each route can answer (declared as method responses: the exported API documents them).
SYNC_STATUSES = ("200", "202", "400", "409", "413", "415", "429", "502", "503", "504")
JOBS_STATUSES = ("202", "400", "409", "413", "415", "429", "502", "503")
LIST_STATUSES = ("200", "400")
CANCEL_STATUSES = ("202", "400", "404", "409")
RETRY_STATUSES = ("202", "400", "404", "409", "413", "415", "429", "502", "503")
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
#: API Gateway's own errors, in the same shape as the function's: {"error", "message"}. A gateway
#: response template is not Velocity, only "simple variable substitutions", so nothing can be escaped
#: in it: it interpolates only ``$context.error.messageString`` ("the quoted value of
#: $context.error.message", used bare, as AWS's own default templates do) and
#: ``$context.error.responseType`` (one of API Gateway's response type names, letters and ``_``), never
#: ``$context.error.validationErrorString`` or ``$context.error.message`` (free text with quotes).
#: tests/infra/test_gateway_templates.py renders each with hostile messages and parses it as JSON.
#: (No request validator: BAD_REQUEST_BODY and BAD_REQUEST_PARAMETERS are here in case one is added.)
GATEWAY_RESPONSES: dict[str, tuple[apigw.ResponseType, str | None, str]] = {
    "InvalidBody": (
        apigw.ResponseType.BAD_REQUEST_BODY,
        "400",
        '{"error": "InvalidRequest", "message": $context.error.messageString}',
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
                "error": "ExecutionTimedOut",  # the name the function gives a wait that ran out
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


def query_parameters(request_schema: Mapping[str, Any]) -> dict[str, bool]:
    """``GET /images``: every request field may be a query parameter; the schema's required ones are
    (documentation: with no request validator API Gateway enforces none of it, the function does)."""
    required = set(request_schema.get("required", []))
    return {f"method.request.querystring.{name}": name in required for name in request_schema["properties"]}


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
    """The REST API, its stage, request model (documentation), auth, and the HTTP API function.

    :param jobs_workflow: the STANDARD state machine every route starts, waits for, lists and reads.
    :param images_bucket: the function presigns image URLs in it, writes cancellation markers and reads
        the manifests of failed jobs (to retry them).
    :param defaults: the function's shared code, layers and environment.
    :param request_schema: the draft-4 request schema (:func:`stacks.request_schema.image_request_schema`).
    :param auth: ``"apiKey"`` (API key + usage plan), ``"iam"`` (SigV4, no key) or ``"cognito"`` (a
        user pool authorizer of ``sign_in``: the signed-in user's ID token, no key).
    :param sign_in: the user pool (``stacks/sign_in.py``), with ``auth="cognito"``.
    :param throttle: stage rate/burst and, with API keys, the usage plan's daily quota.
    :param cors_origins: origins allowed to call the API from a browser (``*`` for any, none: no CORS).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        jobs_workflow: sfn.StateMachine,
        images_bucket: s3.IBucket,
        defaults: FunctionDefaults,
        request_schema: Mapping[str, Any],
        auth: Literal["apiKey", "iam", "cognito"],
        throttle: Throttle,
        cors_origins: Sequence[str] = (),
        sign_in: UserSignIn | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (auth == "cognito") != (sign_in is not None):
            raise ValueError("auth='cognito' takes the user pool (sign_in), and only it does")
        self.auth = auth
        #: The user pool authorizer of every route (``auth="cognito"``).
        self.authorizer = sign_in.authorizer(self, "SignedIn") if sign_in is not None else None
        self.cors_origins = list(cors_origins)

        self.http_api = PipelineFunction(
            self,
            "HttpApi",
            spec=HTTP_API,
            description="imagegen HTTP API: validate and start image requests and jobs (waiting for the "
            "synchronous ones), list, read, cancel and retry jobs, GET /models",
            defaults=defaults,
            memory_size=MASK_CHECK_MEMORY_MB,
            timeout=HTTP_API_TIMEOUT,
            environment={
                "JOBS_STATE_MACHINE_ARN": jobs_workflow.state_machine_arn,
                "SYNC_MAX_WAIT_SECONDS": str(SYNC_MAX_WAIT_SECONDS),
                **({"CORS_ALLOW_ORIGINS": ",".join(self.cors_origins)} if self.cors_origins else {}),
            },
        )
        self._grant_function(jobs_workflow, images_bucket)

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
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
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

        self.request_model = self.rest_api.add_model(
            "ImageRequestModel",
            model_name="ImageRequest",
            content_type=JSON,
            description="An image request (generated from image_pipeline.contract.request.ImageRequest); "
            "documentation: the function validates every request",
            schema=to_cdk_json_schema(request_schema),
        )
        self.error_model = self.rest_api.add_model(
            "ErrorModel", model_name="Error", content_type=JSON, schema=ERROR_SCHEMA
        )
        self._add_gateway_responses()

        integration = apigw.LambdaIntegration(self.http_api.function, timeout=HTTP_API_TIMEOUT)
        images = self.rest_api.root.add_resource("images")
        images.add_method(
            "POST",
            integration,
            request_models={JSON: self.request_model},
            method_responses=self._method_responses(SYNC_STATUSES),
            operation_name="GenerateImages",
            **self._auth_options(),
        )
        images.add_method(
            "GET",
            integration,
            request_parameters=query_parameters(request_schema),
            method_responses=self._method_responses(SYNC_STATUSES),
            operation_name="GenerateImagesFromQuery",
            **self._auth_options(),
        )

        # The caller's images from the image index (stacks/index.py): words, model, time range.
        images.add_resource("search").add_method(
            "GET",
            integration,
            request_parameters={f"method.request.querystring.{name}": False for name in SEARCH_PARAMETERS},
            method_responses=self._method_responses(LIST_STATUSES),
            operation_name="SearchImages",
            **self._auth_options(),
        )

        jobs = self.rest_api.root.add_resource("jobs")
        jobs.add_method(
            "POST",
            integration,
            request_models={JSON: self.request_model},
            request_parameters={"method.request.header.Idempotency-Key": False},
            method_responses=self._method_responses(JOBS_STATUSES),
            operation_name="SubmitJob",
            **self._auth_options(),
        )
        jobs.add_method(
            "GET",
            integration,
            request_parameters={
                f"method.request.querystring.{name}": False for name in ("status", "limit", "next_token")
            },
            method_responses=self._method_responses(LIST_STATUSES),
            operation_name="ListJobs",
            **self._auth_options(),
        )
        job = jobs.add_resource("{id}")
        job.add_method(
            "GET",
            integration,
            request_parameters={"method.request.path.id": True},
            operation_name="GetJob",
            **self._auth_options(),
        )
        job.add_method(
            "DELETE",
            integration,
            request_parameters={"method.request.path.id": True},
            method_responses=self._method_responses(CANCEL_STATUSES),
            operation_name="CancelJob",
            **self._auth_options(),
        )
        # Server-Sent Events, one batch per request (API Gateway buffers a Lambda proxy answer; the
        # client asks again after the batch's retry:): core/job_events.py, docs/decisions.md.
        job.add_resource("events").add_method(
            "GET",
            integration,
            request_parameters={
                "method.request.path.id": True,
                "method.request.header.Last-Event-ID": False,
                "method.request.querystring.last_event_id": False,
            },
            operation_name="GetJobEvents",
            **self._auth_options(),
        )
        job.add_resource("retry").add_method(
            "POST",
            integration,
            request_parameters={"method.request.path.id": True},
            method_responses=self._method_responses(RETRY_STATUSES),
            operation_name="RetryJob",
            **self._auth_options(),
        )
        self.rest_api.root.add_resource("models").add_method(
            "GET", integration, operation_name="ListModels", **self._auth_options()
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

    def _grant_function(self, jobs_workflow: sfn.StateMachine, images_bucket: s3.IBucket) -> None:
        """Exactly what the function calls: start and list jobs, read them, presign image URLs, write
        and look for cancellation markers, read a failed job's manifest (to retry it)."""
        role = self.http_api.role
        #: Every execution of the jobs workflow: the function reads their status and history.
        self.job_executions_arn = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{jobs_workflow.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StartJobs",
                actions=["states:StartExecution"],
                resources=[jobs_workflow.state_machine_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadJobs",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[self.job_executions_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PresignImageUrls",
                actions=["s3:GetObject"],
                resources=[images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadManifestsToRetry",
                actions=["s3:GetObject"],
                resources=[images_bucket.arn_for_objects(MANIFEST_KEYS)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CancelJobs",
                actions=["s3:PutObject"],
                resources=[images_bucket.arn_for_objects(CANCELLATION_KEYS)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LookForCancellations",
                actions=["s3:ListBucket"],
                resources=[images_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [CANCELLATION_KEYS]}},
            )
        )

    def _auth_options(self) -> dict[str, Any]:
        if self.auth == "iam":
            return {"authorization_type": apigw.AuthorizationType.IAM}
        if self.authorizer is not None:
            return {"authorization_type": apigw.AuthorizationType.COGNITO, "authorizer": self.authorizer}
        return {"authorization_type": apigw.AuthorizationType.NONE, "api_key_required": True}

    def _method_responses(self, statuses: Sequence[str]) -> list[apigw.MethodResponse]:
        """Documentation of a proxy route's answers (the function sets status, headers and body)."""
        return [
            apigw.MethodResponse(
                status_code=status,
                response_models={
                    JSON: apigw.Model.EMPTY_MODEL if status.startswith("2") else self.error_model
                },
            )
            for status in statuses
        ]

    def _add_gateway_responses(self) -> None:
        # A gateway response can only carry a fixed header value: with one allowed origin (or "*"),
        # browsers can read API Gateway's own errors (bad body, missing key, throttled) too.
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

"""The OpenAI-compatible API: a second, small REST API whose one route is ``POST /v1/images/generations``.

Why a second API: OpenAI's SDKs send the key as ``Authorization: Bearer <key>``, and API Gateway reads a
REST API's keys from ``x-api-key`` unless the API's key source is ``AUTHORIZER`` -- an API-level
setting, so it cannot be changed for one route of the main API without putting an authorizer in front
of all of them (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-key-source.html).
Here the key source is ``AUTHORIZER``: a REQUEST Lambda authorizer
(``image_pipeline.handlers.openai_authorizer``) returns the Bearer key as ``usageIdentifierKey``
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html),
and API Gateway checks it against the **same usage plan** as the main API (this API's stage is added to
it): the same keys, throttle and daily quota, and the same caller (the key's id) on both APIs, so a job
started here is read with ``GET /jobs/{id}`` there. With ``imagegen:apiAuth=cognito`` there are no keys:
the route has the user pool's authorizer instead, and the SDK's ``api_key`` is a signed-in user's ID
token (sent as ``Authorization: Bearer <token>``, the form Cognito's guide shows). The route's integration is the main API's HTTP API
function. Every answer of this API, API Gateway's own included, is in OpenAI's error shape
(:data:`GATEWAY_RESPONSES`): a missing or unknown key is 401, an unknown route 404, its throttle 429 with
``Retry-After``. docs/decisions.md.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from image_pipeline.core.openai_images import ROUTE
from image_pipeline.functions import OPENAI_AUTHORIZER

from stacks.api import HTTP_API_TIMEOUT, access_log_format
from stacks.config import Throttle
from stacks.functions import LOG_RETENTION, FunctionDefaults, PipelineFunction
from stacks.sign_in import UserSignIn

#: The stage: the SDK's base URL is ``https://<api id>.execute-api.<region>.amazonaws.com/openai/v1``.
STAGE_NAME = "openai"
#: How long API Gateway keeps the authorizer's answer for one Authorization header.
AUTHORIZER_CACHE = Duration.minutes(5)
_MESSAGE = "$context.error.messageString"


def _error(kind: str, code: str, message: str = _MESSAGE) -> str:
    """A gateway response body in OpenAI's error shape (``message`` is JSON-quoted by API Gateway, or a
    fixed text quoted here)."""
    quoted = message if message == _MESSAGE else json.dumps(message)
    return '{"error": {"message": ' + quoted + f', "type": "{kind}", "param": null, "code": "{code}"}}}}'


#: API Gateway's own answers on this API: (type, status or None for the type's own, headers, body).
GATEWAY_RESPONSES: dict[str, tuple[apigw.ResponseType, str | None, dict[str, str], str]] = {
    "Unauthorized": (
        apigw.ResponseType.UNAUTHORIZED,
        "401",
        {},
        _error(
            "invalid_request_error",
            "invalid_api_key",
            "send your API key (with sign-in: your ID token) as Authorization: Bearer <key>",
        ),
    ),
    "InvalidApiKey": (
        apigw.ResponseType.INVALID_API_KEY,
        "401",  # 403 by default: the SDK's AuthenticationError is 401
        {},
        _error(
            "invalid_request_error", "invalid_api_key", "the API key is not valid here (unknown or disabled)"
        ),
    ),
    "MissingRoute": (
        apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "404",  # API Gateway's answer to a route it does not have
        {},
        _error("invalid_request_error", "not_found", f"no such route; this API serves POST {ROUTE}"),
    ),
    "Throttled": (
        apigw.ResponseType.THROTTLED,
        "429",
        {"Retry-After": "'1'"},  # the plan's and the stage's limits are per second
        _error("rate_limit_error", "rate_limit_exceeded"),
    ),
    "QuotaExceeded": (
        apigw.ResponseType.QUOTA_EXCEEDED,
        "429",
        {"Retry-After": "'3600'"},  # a daily quota: more than the SDK's 60 s, so it does not retry
        _error("rate_limit_error", "insufficient_quota"),
    ),
    "RequestTooLarge": (
        apigw.ResponseType.REQUEST_TOO_LARGE,
        "400",
        {},
        _error("invalid_request_error", "request_too_large"),
    ),
    "IntegrationTimeout": (
        apigw.ResponseType.INTEGRATION_TIMEOUT,
        "504",
        {"x-should-retry": "'false'"},  # the job may have started: a retry would start another
        _error(
            "server_error",
            "JobStillRunning",
            "the images took longer than the API's 29 s limit; GET /jobs on the imagegen API lists "
            "your jobs, or use POST /jobs for long requests",
        ),
    ),
    "Default4xx": (
        apigw.ResponseType.DEFAULT_4_XX,
        None,
        {},
        _error("invalid_request_error", "$context.error.responseType"),
    ),
    "Default5xx": (
        apigw.ResponseType.DEFAULT_5_XX,
        None,
        {},
        _error("server_error", "$context.error.responseType"),
    ),
}


class OpenAiImagesApi(Construct):
    """The OpenAI-compatible REST API (key source AUTHORIZER), its authorizer, and its stage in the
    clients' usage plan.

    :param http_api: the main API's HTTP API function, which answers the route.
    :param usage_plan: the clients' usage plan; this API's stage is added to it (API key auth).
    :param defaults: the authorizer function's code, layers and environment.
    :param throttle: the stage's rate and burst (the usage plan's per-key limits apply as well).
    :param sign_in: with ``imagegen:apiAuth=cognito`` (no keys, no usage plan): the user pool, whose
        authorizer checks the SDK's Bearer token, a signed-in user's ID token (the SDK's ``api_key``),
        instead of the key authorizer.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        http_api: lambda_.IFunction,
        usage_plan: apigw.UsagePlan | None,
        defaults: FunctionDefaults,
        throttle: Throttle,
        sign_in: UserSignIn | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (usage_plan is None) == (sign_in is None):
            raise ValueError("give the usage plan (API keys) or the user pool (sign-in), one of them")
        #: The key authorizer's function (API keys; None with sign-in).
        self.authorizer_function = (
            PipelineFunction(
                self,
                "Authorizer",
                spec=OPENAI_AUTHORIZER,
                description="imagegen OpenAI-compatible API: hands the Bearer key to API Gateway as the API key",
                defaults=defaults,
                timeout=Duration.seconds(10),
                memory_size=128,
            )
            if sign_in is None
            else None
        )
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            description="imagegen: the OpenAI Images API shape (POST /v1/images/generations)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER if sign_in is None else None,
            cloud_watch_role=False,  # the main API's account-level role serves every API of the account
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=access_log_format(),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry prompts
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
            ),
        )
        self.authorizer: apigw.IAuthorizer
        if self.authorizer_function is not None:
            self.authorizer = apigw.RequestAuthorizer(
                self,
                "BearerKey",
                handler=self.authorizer_function.function,
                identity_sources=[apigw.IdentitySource.header("Authorization")],
                results_cache_ttl=AUTHORIZER_CACHE,
            )
        else:
            assert sign_in is not None
            self.authorizer = sign_in.authorizer(self, "SignedIn")
        for construct_id, (response_type, status, headers, template) in GATEWAY_RESPONSES.items():
            self.rest_api.add_gateway_response(
                construct_id,
                type=response_type,
                status_code=status,
                response_headers=headers or None,
                templates={"application/json": template},
            )
        resource = self.rest_api.root.resource_for_path(ROUTE)
        self.method = resource.add_method(
            "POST",
            apigw.LambdaIntegration(http_api, timeout=HTTP_API_TIMEOUT),
            authorizer=self.authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM
            if sign_in is None
            else apigw.AuthorizationType.COGNITO,
            api_key_required=sign_in is None,
            operation_name="CreateImage",
        )
        if usage_plan is not None:
            usage_plan.add_api_stage(api=self.rest_api, stage=self.rest_api.deployment_stage)
        stack = Stack.of(self)
        #: The OpenAI SDK's ``base_url`` (from the API id and the stage name, as the main API's URL).
        self.base_url = f"https://{self.rest_api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{STAGE_NAME}/v1"

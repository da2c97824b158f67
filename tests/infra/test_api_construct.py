"""The API construct (``stacks/api.py``) in the synthesized stack: its routes, the request model (and no
validator), the HTTP API function and its permissions, API keys and throttling, errors, CORS, IAM auth."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from image_pipeline.core import time_budget

from stacks.api import HTTP_API_TIMEOUT, SYNC_MAX_WAIT_SECONDS
from stacks.request_schema import image_request_schema
from tests.infra.stack_template import (
    function_id,
    granted,
    join_text,
    main_api_resources,
    method,
    state_machine_id,
    statements_of_role,
)
from tests.infra.synthesis import VARIANT, Synthesized

#: The API's routes: every one a Lambda proxy integration of the HTTP API function.
ROUTES = [
    ("POST", "/images"),
    ("GET", "/images"),
    ("GET", "/images/search"),
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("GET", "/jobs/{id}/events"),
    ("DELETE", "/jobs/{id}"),
    ("POST", "/jobs/{id}/retry"),
    ("GET", "/models"),
]


def test_http_api_knows_the_jobs_state_machine_and_waits_less_than_its_timeout(
    synthesized: Synthesized,
) -> None:
    fn = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "http_api")]["Properties"]
    variables = fn["Environment"]["Variables"]
    assert variables["JOBS_STATE_MACHINE_ARN"] == {"Ref": state_machine_id(synthesized, "STANDARD")}
    assert "SYNC_STATE_MACHINE_ARN" not in variables  # no Express state machine: every run is a job
    # API Gateway's integration limit; the wait for a synchronous route's job leaves time for its last
    # poll and the answer (a 202 with the job when it is not done).
    assert fn["Timeout"] == HTTP_API_TIMEOUT.to_seconds() == 29
    wait = float(variables["SYNC_MAX_WAIT_SECONDS"])
    assert wait == SYNC_MAX_WAIT_SECONDS > 0
    assert time_budget.sync_wait_bound(wait) <= fn["Timeout"]
    # With the web page, the page's origin is the one CORS origin of the function's answers.
    origin = join_text(variables["CORS_ALLOW_ORIGINS"])
    assert origin.startswith("https://<") and origin.endswith(".DomainName>")


def test_api_gateway_itself_may_start_no_workflow(synthesized: Synthesized) -> None:
    """No integration role: only the HTTP API function starts executions (after its checks)."""
    for role_id, role in synthesized.resources("AWS::IAM::Role").items():
        principals = json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
        if "apigateway.amazonaws.com" in principals:
            assert not [
                a for a in granted(statements_of_role(synthesized, role_id)) if a.startswith("states:")
            ]


def test_request_model_is_generated_from_the_pydantic_request(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Model",
        {"Name": "ImageRequest", "ContentType": "application/json", "Schema": image_request_schema()},
    )


@pytest.mark.parametrize("deployment", ["synthesized", "variant"])
def test_api_gateway_validates_no_request_the_function_does(
    deployment: str, request: pytest.FixtureRequest
) -> None:
    """Every request reaches the function, whose one check answers with one message naming every field,
    as the console, events and the local server do (docs/decisions.md)."""
    synth: Synthesized = request.getfixturevalue(deployment)
    assert synth.resources("AWS::ApiGateway::RequestValidator") == {}
    for m in synth.resources("AWS::ApiGateway::Method").values():
        assert "RequestValidatorId" not in m["Properties"]


def image_request_model(synth: Synthesized) -> str:
    return next(
        k
        for k, v in synth.resources("AWS::ApiGateway::Model").items()
        if v["Properties"]["Name"] == "ImageRequest"
    )


@pytest.mark.parametrize(("http_method", "path"), ROUTES)
def test_every_route_is_a_lambda_proxy_integration_of_the_http_api_function(
    synthesized: Synthesized, http_method: str, path: str
) -> None:
    props = method(synthesized, http_method, path)
    integration = props["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    assert integration["IntegrationHttpMethod"] == "POST"  # Lambda's Invoke, whatever the route's method
    uri = join_text(integration["Uri"])
    assert f"<{function_id(synthesized, 'http_api')}.Arn>/invocations" in uri
    assert integration["TimeoutInMillis"] == 29000
    assert props["ApiKeyRequired"] is True


def test_only_the_five_routes_and_their_preflights_exist(synthesized: Synthesized) -> None:
    methods = main_api_resources(synthesized, "AWS::ApiGateway::Method").values()
    assert {m["Properties"]["Integration"]["Type"] for m in methods} == {"AWS_PROXY", "MOCK"}
    routes = [m for m in methods if m["Properties"]["HttpMethod"] != "OPTIONS"]
    # and GET /links/{token}, a proxy of the follow-link function (test_links_construct.py)
    assert len(routes) == len(ROUTES) + 1
    assert sum(m["Properties"].get("OperationName") == "FollowLink" for m in routes) == 1


@pytest.mark.parametrize("path", ["/images", "/jobs"])
def test_post_bodies_are_documented_by_the_request_model(synthesized: Synthesized, path: str) -> None:
    """The generated model documents the body (exported API, SDKs); the function answers a bad one 400."""
    props = method(synthesized, "POST", path)
    assert props["RequestModels"] == {"application/json": {"Ref": image_request_model(synthesized)}}
    statuses = {r["StatusCode"] for r in props["MethodResponses"]}
    assert {"400", "413", "415", "429", "502"} <= statuses
    assert ("202" if path == "/jobs" else "200") in statuses


def test_get_images_documents_every_request_field(synthesized: Synthesized) -> None:
    """Documentation of the query string (with no validator, the function answers a missing prompt)."""
    props = method(synthesized, "GET", "/images")
    schema = image_request_schema()
    # No field is required by itself: a prompt, or an operation on a stored image (issue 16).
    assert props["RequestParameters"] == {
        f"method.request.querystring.{name}": False for name in schema["properties"]
    }
    assert [branch["required"] for branch in schema["anyOf"]] == [["prompt"], ["source_image"], ["operation"]]


def test_post_jobs_takes_an_idempotency_key_header(synthesized: Synthesized) -> None:
    props = method(synthesized, "POST", "/jobs")
    assert props["RequestParameters"] == {"method.request.header.Idempotency-Key": False}
    assert "409" in {r["StatusCode"] for r in props["MethodResponses"]}


def test_api_gateway_may_invoke_the_function_from_each_route(synthesized: Synthesized) -> None:
    """One permission per route of the deployed stage (and per route of the console's test-invoke)."""
    function = {"Fn::GetAtt": [function_id(synthesized, "http_api"), "Arn"]}
    sources = [
        join_text(p["Properties"]["SourceArn"]).split("/", 2)  # [api, stage, method/path]
        for p in main_api_resources(synthesized, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == function
        and p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    routes = {f"{m}{path.replace('{id}', '*')}" for m, path in ROUTES}
    assert len(sources) == 2 * len(routes)
    assert {route for _, stage, route in sources if stage != "test-invoke-stage"} == routes


def test_api_key_and_usage_plan_throttle_and_quota(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 10, "BurstLimit": 20},
            "Quota": {"Limit": 1000, "Period": "DAY"},
            # the main API's stage, and the OpenAI-compatible API's (tests/infra/test_openai_api_construct.py)
            "ApiStages": Match.array_with([Match.object_like({"Stage": {"Ref": Match.any_value()}})]),
        },
    )
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)


def test_stage_logs_access_and_errors_traces_and_throttles(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "v1",
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.integrationStatus"),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                        "ThrottlingRateLimit": 10,
                        "ThrottlingBurstLimit": 20,
                    }
                )
            ],
        },
    )


def test_api_gateway_errors_use_the_error_shape(synthesized: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in main_api_resources(synthesized, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert {
        "BAD_REQUEST_BODY",
        "BAD_REQUEST_PARAMETERS",
        "INTEGRATION_TIMEOUT",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    } <= set(responses)
    body = responses["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"]
    assert body == '{"error": "InvalidRequest", "message": $context.error.messageString}'
    assert responses["INTEGRATION_TIMEOUT"]["StatusCode"] == "504"
    timeout = json.loads(responses["INTEGRATION_TIMEOUT"]["ResponseTemplates"]["application/json"])
    assert timeout["error"] == "ExecutionTimedOut" and "POST /jobs" in timeout["message"]


def test_cors_allows_the_web_page_origin(synthesized: Synthesized) -> None:
    options = method(synthesized, "OPTIONS", "/images")
    headers = options["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
    origin = join_text(headers["method.response.header.Access-Control-Allow-Origin"])
    assert origin.startswith("'https://<") and origin.endswith(".DomainName>'")
    # API Gateway's own errors carry the same (single) origin, so the page can read them too.
    for response in main_api_resources(synthesized, "AWS::ApiGateway::GatewayResponse").values():
        header = response["Properties"]["ResponseParameters"][
            "gatewayresponse.header.Access-Control-Allow-Origin"
        ]
        assert join_text(header) == origin


def test_variant_uses_iam_auth_without_api_key_and_allows_both_origins(variant: Synthesized) -> None:
    template = variant.template
    template.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    template.resource_count_is("AWS::CloudFront::Distribution", 0)
    for m in variant.resources("AWS::ApiGateway::Method").values():
        props = m["Properties"]
        if props["HttpMethod"] != "OPTIONS" and props.get("OperationName") != "FollowLink":
            assert props["AuthorizationType"] == "AWS_IAM"
            assert props.get("ApiKeyRequired") in (None, False)
    fn = variant.resources("AWS::Lambda::Function")[function_id(variant, "http_api")]["Properties"]
    assert (
        fn["Environment"]["Variables"]["CORS_ALLOW_ORIGINS"] == "https://a.example.com,https://b.example.com"
    )
    stage = next(iter(variant.resources("AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 2
    assert VARIANT["apiAuth"] == variant.config.api_auth


def test_api_gateway_authenticates_every_route_before_the_function(synthesized: Synthesized) -> None:
    """Tenancy: the function takes the caller from what API Gateway authenticated (the key's id in the
    request context), so no route may reach it unauthenticated. A missing or unknown key is answered by
    API Gateway itself, 403 (the INVALID_API_KEY gateway response, "Forbidden"; docs.aws.amazon.com/
    apigateway/latest/developerguide/supported-gateway-response-types.html, read 2026-11-30): DEFAULT_4XX
    gives it the {"error", "message"} shape and keeps that status."""
    for http_method, path in ROUTES:
        props = method(synthesized, http_method, path)
        assert (props["AuthorizationType"], props["ApiKeyRequired"]) == ("NONE", True), (http_method, path)
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in main_api_resources(synthesized, "AWS::ApiGateway::GatewayResponse").values()
    }
    answers_403 = responses.get("INVALID_API_KEY") or responses["DEFAULT_4XX"]
    assert answers_403.get("StatusCode") in (None, "403")  # API Gateway's own 403 is kept
    template = answers_403["ResponseTemplates"]["application/json"]
    rendered = template.replace("$context.error.responseType", "INVALID_API_KEY").replace(
        "$context.error.messageString", '"Forbidden"'
    )
    assert json.loads(rendered) == {"error": "INVALID_API_KEY", "message": "Forbidden"}

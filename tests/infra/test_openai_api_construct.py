"""The OpenAI-compatible API (``stacks/openai_api.py``) in the synthesized template: a second REST API
whose key source is AUTHORIZER, one route ``POST /v1/images/generations`` behind a REQUEST authorizer
that reads ``Authorization``, answered by the main API's function, its stage in the clients' usage
plan, and API Gateway's own answers in OpenAI's error shape. With IAM auth there is none."""

from __future__ import annotations

import json
from typing import Any

from airspeed import Template as Velocity

from stacks.openai_api import GATEWAY_RESPONSES, STAGE_NAME
from tests.infra.stack_template import function_id, logical_id_where
from tests.infra.synthesis import Synthesized

AUTHORIZER_HANDLER = "image_pipeline.handlers.openai_authorizer.handler"


def openai_api_id(synth: Synthesized) -> str:
    return logical_id_where(synth, "AWS::ApiGateway::RestApi", ApiKeySourceType="AUTHORIZER")


def test_the_route_needs_a_key_from_the_bearer_authorizer(synthesized: Synthesized) -> None:
    api = openai_api_id(synthesized)
    (authorizer,) = synthesized.resources("AWS::ApiGateway::Authorizer").values()
    props = authorizer["Properties"]
    assert props["Type"] == "REQUEST" and props["RestApiId"] == {"Ref": api}
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert props["AuthorizerResultTtlInSeconds"] == 300
    fn = logical_id_where(synthesized, "AWS::Lambda::Function", Handler=AUTHORIZER_HANDLER)
    assert fn in json.dumps(props["AuthorizerUri"])

    methods = [
        m["Properties"]
        for m in synthesized.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["RestApiId"] == {"Ref": api} and m["Properties"]["HttpMethod"] != "OPTIONS"
    ]
    (method,) = methods  # one route, nothing else
    assert method["HttpMethod"] == "POST" and method["ApiKeyRequired"] is True
    assert method["AuthorizationType"] == "CUSTOM"
    # Answered by the main API's function (Lambda proxy).
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert function_id(synthesized, "http_api") in json.dumps(method["Integration"]["Uri"])
    # The path is /v1/images/generations.
    parts = {
        k: r["Properties"]["PathPart"]
        for k, r in synthesized.resources("AWS::ApiGateway::Resource").items()
        if r["Properties"]["RestApiId"] == {"Ref": api}
    }
    assert sorted(parts.values()) == ["generations", "images", "v1"]
    assert parts[method["ResourceId"]["Ref"]] == "generations"


def test_its_stage_is_in_the_clients_usage_plan(synthesized: Synthesized) -> None:
    api = openai_api_id(synthesized)
    (plan,) = synthesized.resources("AWS::ApiGateway::UsagePlan").values()
    stages = plan["Properties"]["ApiStages"]
    assert len(stages) == 2  # the main API's and this one's: one key works on both
    assert {"Ref": api} in [s["ApiId"] for s in stages]
    stage_names = [
        s["Properties"]["StageName"]
        for s in synthesized.resources("AWS::ApiGateway::Stage").values()
        if s["Properties"]["RestApiId"] == {"Ref": api}
    ]
    assert stage_names == [STAGE_NAME]
    outputs = synthesized.template_json["Outputs"]
    assert "OpenAiBaseUrl" in outputs and f"/{STAGE_NAME}/v1" in json.dumps(outputs["OpenAiBaseUrl"])


def _render(template: str, message: str) -> dict[str, Any]:
    context = {"context": {"error": {"messageString": json.dumps(message), "responseType": "THROTTLED"}}}
    return dict(json.loads(Velocity(template).merge(context)))


def test_gateway_answers_are_openai_errors_with_the_sdk_statuses(synthesized: Synthesized) -> None:
    api = openai_api_id(synthesized)
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["RestApiId"] == {"Ref": api}
    }
    assert set(responses) == {t.response_type for t, *_ in GATEWAY_RESPONSES.values()}
    expected_status = {
        "UNAUTHORIZED": "401",
        "INVALID_API_KEY": "401",
        "MISSING_AUTHENTICATION_TOKEN": "404",
        "THROTTLED": "429",
        "QUOTA_EXCEEDED": "429",
        "INTEGRATION_TIMEOUT": "504",
    }
    for response_type, status in expected_status.items():
        assert responses[response_type].get("StatusCode") == status, response_type
    assert responses["THROTTLED"]["ResponseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    assert responses["INTEGRATION_TIMEOUT"]["ResponseParameters"] == {
        "gatewayresponse.header.x-should-retry": "'false'"
    }
    for response_type, props in responses.items():
        body = _render(props["ResponseTemplates"]["application/json"], 'a "quoted"\\ message\n')
        assert set(body) == {"error"}, response_type
        assert set(body["error"]) == {"message", "type", "param", "code"}, response_type
        assert body["error"]["param"] is None and body["error"]["message"]


def test_no_openai_api_with_iam_auth(variant: Synthesized) -> None:
    apis = variant.resources("AWS::ApiGateway::RestApi").values()
    assert all(a["Properties"].get("ApiKeySourceType") != "AUTHORIZER" for a in apis)
    assert not variant.resources("AWS::ApiGateway::Authorizer")

"""Sign-in (``imagegen:apiAuth=cognito``, ``stacks/sign_in.py``) in the synthesized stack: the user pool's
password policy and MFA, the page's public client (authorization code with PKCE, no secret, the page
its only callback), the hosted domain, a user pool authorizer on every route of both APIs (no API key,
no usage plan), what the page is told in ``config.js`` and may fetch (CSP), the outputs, and cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ImagegenConfig
from stacks.imagegen_stack import LOCAL_PAGE_URL
from stacks.web import config_script, content_security_policy
from tests.infra.stack_template import join_text
from tests.infra.synthesis import Synthesized, synthesize


def _one(synth: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    found = synth.resources(kind)
    assert len(found) == 1, list(found)
    return next(iter(found.items()))


def test_the_user_pool_requires_a_strong_password_and_totp(cognito: Synthesized) -> None:
    _, pool = _one(cognito, "AWS::Cognito::UserPool")
    props = pool["Properties"]
    assert props["Policies"]["PasswordPolicy"] == {
        "MinimumLength": 12,
        "RequireLowercase": True,
        "RequireUppercase": True,
        "RequireNumbers": True,
        "RequireSymbols": True,
        "TemporaryPasswordValidityDays": 3,
    }
    assert props["MfaConfiguration"] == "ON"
    assert props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]  # no SMS
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True  # no self sign-up
    assert props["UsernameAttributes"] == ["email"]
    assert props["DeletionProtection"] == "ACTIVE" and pool["DeletionPolicy"] == "Retain"


def test_the_page_client_is_public_and_uses_the_code_flow_only(cognito: Synthesized) -> None:
    _, client = _one(cognito, "AWS::Cognito::UserPoolClient")
    props = client["Properties"]
    assert props["GenerateSecret"] is False
    assert props["AllowedOAuthFlows"] == ["code"] and props["AllowedOAuthFlowsUserPoolClient"] is True
    assert sorted(props["AllowedOAuthScopes"]) == ["email", "openid"]
    assert props["SupportedIdentityProviders"] == ["COGNITO"]
    assert props["PreventUserExistenceErrors"] == "ENABLED" and props["EnableTokenRevocation"] is True
    web_url = join_text(cognito.template_json["Outputs"]["WebUrl"]["Value"])
    assert [join_text(u) for u in props["CallbackURLs"]] == [web_url]
    assert [join_text(u) for u in props["LogoutURLs"]] == [web_url]
    _, domain = _one(cognito, "AWS::Cognito::UserPoolDomain")
    assert "imagegen" in join_text(domain["Properties"]["Domain"])


def test_every_route_of_both_apis_has_the_user_pools_authorizer(cognito: Synthesized) -> None:
    authorizers = cognito.resources("AWS::ApiGateway::Authorizer")
    assert len(authorizers) == 2  # one per REST API: the main API and the OpenAI-compatible one
    pool_id, _ = _one(cognito, "AWS::Cognito::UserPool")
    for authorizer in authorizers.values():
        props = authorizer["Properties"]
        assert props["Type"] == "COGNITO_USER_POOLS"
        assert props["IdentitySource"] == "method.request.header.Authorization"
        assert props["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    routes = {
        rid: m["Properties"]
        for rid, m in cognito.resources("AWS::ApiGateway::Method").items()
        if m["Properties"]["HttpMethod"] != "OPTIONS" and m["Properties"].get("OperationName") != "FollowLink"
    }
    assert {"GenerateImages", "SubmitJob", "GetJob", "SearchImages", "CreateImage"} <= {
        r.get("OperationName") for r in routes.values()
    }
    for rid, props in routes.items():
        assert props["AuthorizationType"] == "COGNITO_USER_POOLS", rid
        assert props["AuthorizerId"]["Ref"] in authorizers, rid
        assert not props.get("ApiKeyRequired"), rid
        assert "AuthorizationScopes" not in props, rid  # no scopes: API Gateway expects the ID token
    assert not cognito.resources("AWS::ApiGateway::ApiKey")
    assert not cognito.resources("AWS::ApiGateway::UsagePlan")
    assert not [k for k in cognito.resources("AWS::Lambda::Function") if "OpenAiApiAuthorizer" in k]


def test_the_page_is_told_where_to_sign_in_and_may_fetch_the_token_endpoint(cognito: Synthesized) -> None:
    outputs = cognito.template_json["Outputs"]
    assert {"UserPoolId", "SignInUrl", "PageClientId", "OpenAiBaseUrl"} <= set(outputs)
    assert "ApiKeyId" not in outputs and "UsagePlanId" not in outputs
    # config.js (written by the page's deployment) refers to the hosted domain and the page's client
    deployment = next(iter(cognito.resources("Custom::CDKBucketDeployment").values()))
    markers = json.dumps(deployment["Properties"]["SourceMarkers"])
    client_id, _ = _one(cognito, "AWS::Cognito::UserPoolClient")
    domain_id, _ = _one(cognito, "AWS::Cognito::UserPoolDomain")
    assert f'{{"Ref": "{client_id}"}}' in markers and f'{{"Ref": "{domain_id}"}}' in markers
    policy = next(iter(cognito.resources("AWS::CloudFront::ResponseHeadersPolicy").values()))
    csp = join_text(
        policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"][
            "ContentSecurityPolicy"
        ]
    )
    assert "/oauth2/token" in csp.split("connect-src", 1)[1].split(";")[0]


def test_config_script_and_csp_without_and_with_sign_in() -> None:
    plain = config_script("https://api.example.com/v1/", api_key_required=True)
    assert json.loads(plain.split("=", 1)[1].rstrip(";\n"))["auth"] is None
    signed = config_script(
        "https://api.example.com/v1/",
        api_key_required=False,
        sign_in={
            "domain": "https://x.auth.us-west-2.amazoncognito.com",
            "clientId": "abc",
            "scope": "openid",
        },
    )
    assert json.loads(signed.split("=", 1)[1].rstrip(";\n"))["auth"] == {
        "kind": "cognito",
        "domain": "https://x.auth.us-west-2.amazoncognito.com",
        "clientId": "abc",
        "scope": "openid",
    }
    csp = content_security_policy(
        "https://api.example.com/v1/", (), "https://x.auth.us-west-2.amazoncognito.com"
    )
    assert (
        "connect-src 'self' https://api.example.com/v1/ https://x.auth.us-west-2.amazoncognito.com/oauth2/token;"
        in csp
    )


def test_no_unacknowledged_finding_on_the_sign_in_or_the_apis(cognito: Synthesized) -> None:
    ours = ("/SignIn/", "/Api/", "/OpenAiApi/")
    errors = [
        (v["ruleName"], c["constructPath"])
        for v in cognito.violations()
        for c in v["violatingConstructs"]
        if any(part in c["constructPath"] for part in ours)
    ]
    assert errors == []


@pytest.mark.parametrize(
    ("prefix", "words"),
    [("my-aws-login", "aws"), ("cognito-x", "cognito"), ("Upper", "pattern"), ("-dash", "pattern")],
)
def test_a_bad_domain_prefix_stops_synthesis(prefix: str, words: str) -> None:
    with pytest.raises(ValueError, match="imagegen:cognitoDomainPrefix") as raised:
        ImagegenConfig.from_mapping({"apiAuth": "cognito", "cognitoDomainPrefix": prefix})
    assert words in str(raised.value)
    assert ImagegenConfig.from_mapping({"apiAuth": "cognito", "cognitoDomainPrefix": "team-images"})


def test_without_the_page_the_local_page_is_the_callback(tmp_path: Path) -> None:
    synth = synthesize(tmp_path, {"apiAuth": "cognito", "web": "false"})
    _, client = _one(synth, "AWS::Cognito::UserPoolClient")
    assert client["Properties"]["CallbackURLs"] == [LOCAL_PAGE_URL]


def test_a_missing_or_bad_token_is_api_gateways_401_in_the_error_shape(cognito: Synthesized) -> None:
    """The user pool authorizer refuses with UNAUTHORIZED (401); the main API's gateway responses do
    not change that status (Default4xx keeps it, in the {error, message} shape), and the OpenAI API's
    Unauthorized answer is 401 in OpenAI's shape."""
    responses = {
        (props["RestApiId"]["Ref"], props["ResponseType"]): props
        for props in (r["Properties"] for r in cognito.resources("AWS::ApiGateway::GatewayResponse").values())
    }
    apis = {k for k in cognito.resources("AWS::ApiGateway::RestApi")}
    main = next(a for a in apis if a.startswith("ApiRestApi"))
    openai = next(a for a in apis if a.startswith("OpenAiApi"))
    assert (main, "UNAUTHORIZED") not in responses
    default = responses[(main, "DEFAULT_4XX")]
    assert "StatusCode" not in default  # API Gateway's own 401 stays 401
    assert '"error": "$context.error.responseType"' in default["ResponseTemplates"]["application/json"]
    assert responses[(openai, "UNAUTHORIZED")]["StatusCode"] == "401"

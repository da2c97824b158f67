"""Every template of the synthesized API answers valid JSON, whatever the message (``stacks/api.py``).

Each gateway response template, and each integration mapping template, is rendered with a Velocity
renderer (airspeed) for messages holding double quotes, backslashes, newlines and ``\\'``, and the
result of every template a client receives is parsed as JSON.

How API Gateway fills a variable decides what it may become (read 2026-11-30):

* ``$context.error.messageString``: "The quoted value of $context.error.message, namely
  "$context.error.message"" (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html),
  used bare in AWS's own example templates
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-swagger-extensions-gateway-responses.responseTemplates.html):
  rendered as the message JSON-quoted.
* ``$context.error.message`` and ``$context.error.validationErrorString``: free text, not documented as
  escaped (validation messages contain double quotes): rendered as the hostile message itself.
* ``$context.error.responseType``: one of the names listed under "Valid Values" of
  https://docs.aws.amazon.com/apigateway/latest/api/API_GatewayResponse.html (capitals and ``_``).
* ``$context.requestId``: an id (hex digits and ``-``).

Gateway responses are not Velocity ("simple variable substitutions" only): rendering them with
airspeed is a superset of what API Gateway does, and a template that puts free text inside quotes fails.
A variable this test does not know fails it too: add it to :data:`VARIABLES` with how AWS fills it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import airspeed
import pytest

from stacks.api import GATEWAY_RESPONSES
from stacks.openai_api import GATEWAY_RESPONSES as OPENAI_GATEWAY_RESPONSES
from tests.infra.stack_template import openai_api_ref
from tests.infra.synthesis import Synthesized

#: Messages that break JSON when they are interpolated without escaping.
HOSTILE_MESSAGES = [
    '[object has missing required properties (["prompt"])]',
    "back\\slash and \\u0041 and a trailing \\",
    "two\nlines\r\nand a\ttab",
    "it\\'s quoted the JavaScript way, and it's not",
    '"}, "injected": {"',
    "#set($x = 1) $context.error.message ${x}",
    "\u2028 line separator, \u0000 NUL",
]
REFERENCE = re.compile(r"\$!?\{?([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)")


def variables(message: str) -> dict[str, str]:
    """``$context.*`` variable -> the text API Gateway substitutes for it, for ``message``."""
    return {
        "context.error.messageString": json.dumps(message),
        "context.error.message": message,
        "context.error.validationErrorString": message,
        "context.error.responseType": "BAD_REQUEST_BODY",
        "context.requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    }


VARIABLES = frozenset(variables("x"))


def context_of(message: str) -> dict[str, Any]:
    """The nested mapping airspeed resolves ``$context.error.message`` etc. in."""
    root: dict[str, Any] = {}
    for dotted, value in variables(message).items():
        node = root
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return root


def render(template: str, message: str) -> str:
    unknown = {ref for ref in REFERENCE.findall(template) if ref not in VARIABLES}
    assert not unknown, f"{template!r} uses {sorted(unknown)}: add them to VARIABLES with how AWS fills them"
    return str(airspeed.Template(template).merge(context_of(message)))


def gateway_templates(synth: Synthesized) -> Iterator[tuple[str, str]]:
    """Every gateway response template of every API of the stack (the main API's and the
    OpenAI-compatible one's, whose bodies are OpenAI's error shape)."""
    for response in synth.resources("AWS::ApiGateway::GatewayResponse").values():
        props = response["Properties"]
        for content_type, template in props.get("ResponseTemplates", {}).items():
            yield f"{props['RestApiId']['Ref']} {props['ResponseType']} {content_type}", template


def integration_templates(synth: Synthesized) -> Iterator[tuple[str, str, bool]]:
    """(where, template, answered to a client) of every integration's request and response templates."""
    for logical_id, resource in synth.resources("AWS::ApiGateway::Method").items():
        integration = resource["Properties"].get("Integration", {})
        for content_type, template in integration.get("RequestTemplates", {}).items():
            yield f"{logical_id} request {content_type}", template, False
        for answer in integration.get("IntegrationResponses", []):
            for content_type, template in (answer.get("ResponseTemplates") or {}).items():
                yield f"{logical_id} response {answer.get('StatusCode')} {content_type}", template, True


@pytest.mark.parametrize("deployment", ["synthesized", "variant"])
def test_every_gateway_response_renders_valid_json_for_any_message(
    deployment: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(deployment)
    templates = dict(gateway_templates(synth))
    openai = len(OPENAI_GATEWAY_RESPONSES) if openai_api_ref(synth) else 0
    assert len(templates) == len(GATEWAY_RESPONSES) + openai
    for where, template in templates.items():
        for message in HOSTILE_MESSAGES:
            rendered = render(template, message)
            try:
                body = json.loads(rendered)
            except json.JSONDecodeError as exc:
                pytest.fail(f"{where}: {template!r} with {message!r} is not JSON ({exc}): {rendered!r}")
            if isinstance(body.get("error"), dict):  # the OpenAI-compatible API: OpenAI's error shape
                body = body["error"]
                assert set(body) == {"message", "type", "param", "code"}, where
            else:
                assert set(body) == {"error", "message"}, where
                assert isinstance(body["error"], str), where
            assert isinstance(body["message"], str), where
            if "$context.error.messageString" in template:
                assert body["message"] == message, where  # the message arrives whole


def test_no_gateway_response_puts_free_text_in_quotes() -> None:
    """The check above would catch it; this names the rule: free-text variables are never interpolated."""
    for _response_type, _status, template in GATEWAY_RESPONSES.values():
        assert "validationErrorString" not in template
        assert not re.search(r"\$context\.error\.message(?!String)", template)


def test_the_renderer_catches_an_unescaped_message() -> None:
    """The test above can fail: the template this API had (the validator's message in quotes) does."""
    template = '{"error": "InvalidRequest", "message": "$context.error.validationErrorString"}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(render(template, HOSTILE_MESSAGES[0]))


def test_integration_templates_interpolate_nothing(synthesized: Synthesized) -> None:
    """Every route is a Lambda proxy (no mapping template); the CORS preflights' mock integrations have
    the CDK's fixed request template (read by API Gateway, not sent to a client), which interpolates
    nothing. A template that comes to interpolate must escape each value, as AWS advises for JSON:
    ``"$util.escapeJavaScript($x).replaceAll("\\\\'","'")"`` (mapping template reference above), and be
    rendered here like the gateway responses."""
    found = list(integration_templates(synthesized))
    assert found, "the CORS preflights' mock integrations have request templates"
    for where, template, _answered in found:
        assert "$" not in template, f"{where} interpolates: escape it and render it in this test"

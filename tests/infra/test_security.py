"""Security sweep of the synthesized templates (both deployments of ``conftest.py``): every statement
of every IAM policy, every bucket, every API method, every function's environment, every log setting.

``test_stack.py`` checks each function's grants one by one and ``test_nag.py`` that cdk-nag finds
nothing unacknowledged; this file asserts the properties that must hold for *any* resource the stack
(or CDK on its behalf) adds: nothing is granted on ``*`` but what AWS only grants on ``*``, Bedrock only
on the configured models, S3 only on the stack's buckets (the images bucket only on its image and
manifest keys), buckets private, encrypted and SSL-only, every route authenticated, bodies bounded,
and nothing that writes prompts, keys or whole requests to logs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from image_pipeline.contract.request import MAX_IMAGES, MAX_PROMPT_CHARS
from image_pipeline.core.jobs import MAX_BODY_BYTES
from image_pipeline.models.registry import get_adapter

from tests.infra.synthesis import Synthesized

DEPLOYMENTS = ["synthesized", "variant"]

#: Actions AWS grants only on "*" (no resource-level permissions), and who needs them.
STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray tracing of the functions",
    "xray:PutTelemetryRecords": "X-Ray tracing of the functions",
    "xray:GetSamplingRules": "X-Ray tracing of the state machines",
    "xray:GetSamplingTargets": "X-Ray tracing of the state machines",
    "logs:CreateLogDelivery": "state machine logging (vended logs)",
    "logs:DeleteLogDelivery": "state machine logging",
    "logs:DescribeLogGroups": "state machine logging",
    "logs:DescribeResourcePolicies": "state machine logging",
    "logs:GetLogDelivery": "state machine logging",
    "logs:ListLogDeliveries": "state machine logging",
    "logs:PutResourcePolicy": "state machine logging",
    "logs:UpdateLogDelivery": "state machine logging",
    "aws-marketplace:Subscribe": "a third-party model's first call (stacks/model_access.py)",
    "aws-marketplace:ViewSubscriptions": "a third-party model's first call (stacks/model_access.py)",
    "cloudfront:CreateInvalidation": "CDK's BucketDeployment of the web page",
    "cloudfront:GetInvalidation": "CDK's BucketDeployment of the web page",
    # no resource type in the Service Authorization Reference (stacks/admission.py: WAKE_RESOURCE)
    "states:SendTaskSuccess": "waking a branch waiting for its admission slot",
    "states:SendTaskFailure": "waking a branch waiting for its admission slot",
    "states:SendTaskHeartbeat": "waking a branch waiting for its admission slot",
}
#: Suffixes under which the images bucket may be granted, and the actions each allows.
IMAGES_BUCKET_GRANTS = {
    "": {"s3:ListBucket"},
    "/*.png": {"s3:PutObject", "s3:GetObject"},
    "/*/manifest.json": {"s3:PutObject", "s3:GetObject"},
    # a job's cancellation marker (DELETE /jobs/{id}); looked for with ListBucket on its prefix
    "/cancellations/*": {"s3:PutObject"},
    # each webhook delivery's record: written by the delivery function, read by it and GET /jobs/{id};
    # claimed (written) by the image function or the job's end, deleted when its message was not sent
    "/webhooks/*": {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"},
    # batches: the uploaded JSONL files, and the batch's items, Map results and batch manifest
    "/batches/*": {"s3:GetObject"},
    "/batch-results/*": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListMultipartUploadParts",
        "s3:AbortMultipartUpload",
    },
}
#: The CDK's bucket-notifications handler (EventBridge on) may also set the bucket's notifications.
NOTIFICATIONS_POLICY = "StorageImagesNotificationsHandlerPolicy"
CDK_ASSETS_BUCKET = "cdk-hnb659fds-assets-"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    """Every Allow statement of every identity policy: (resource id, statement)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for rid, resource in synth.template_json["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for document in documents:
            found += [(rid, s) for s in document["Statement"] if s.get("Effect", "Allow") == "Allow"]
    return found


def bucket_of(resource: Any, synth: Synthesized) -> tuple[str, str]:
    """(bucket logical id or literal name, the suffix after the bucket ARN) of an S3 resource."""
    buckets = set(synth.resources("AWS::S3::Bucket"))
    if isinstance(resource, dict) and "Fn::GetAtt" in resource and resource["Fn::GetAtt"][0] in buckets:
        return resource["Fn::GetAtt"][0], ""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        parts = resource["Fn::Join"][1]
        if (
            len(parts) == 2
            and isinstance(parts[0], dict)
            and parts[0].get("Fn::GetAtt", [None])[0] in buckets
            and isinstance(parts[1], str)
        ):
            return parts[0]["Fn::GetAtt"][0], parts[1]
    if isinstance(resource, str) and resource.startswith(f"arn:aws:s3:::{CDK_ASSETS_BUCKET}"):
        name, _, rest = resource.removeprefix("arn:aws:s3:::").partition("/")
        return name, f"/{rest}" if rest else ""
    raise AssertionError(f"S3 resource that is not one of the stack's buckets: {json.dumps(resource)}")


def images_bucket(synth: Synthesized) -> str:
    [bucket] = [rid for rid in synth.resources("AWS::S3::Bucket") if rid.startswith("StorageImages")]
    return bucket


# -- IAM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_no_action_wildcard_and_no_resource_wildcard_but_where_aws_requires_it(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    found = statements(synth)
    assert len(found) > 10
    for rid, statement in found:
        actions = as_list(statement["Action"])
        assert "*" not in actions, (rid, statement)
        for action in actions:
            service, _, name = action.partition(":")
            assert name != "*", f"{rid}: {action} grants a whole service"
            assert service != "iam" or action != "iam:PassRole" or "*" not in as_list(statement["Resource"])
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= set(STAR_ONLY_ACTIONS), (rid, actions)


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_bedrock_is_granted_only_invoke_and_only_on_the_configured_models(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    allowed = {
        f"{synth.arn_prefix}:bedrock:{synth.region}::foundation-model/{get_adapter(m).model_id}"
        for m in synth.config.allowed_models
    }
    granted: set[str] = set()
    for rid, statement in statements(synth):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("bedrock:")]
        if not actions:
            continue
        assert actions == ["bedrock:InvokeModel"], (rid, actions)
        for resource in as_list(statement["Resource"]):
            text = resource if isinstance(resource, str) else json.dumps(resource)
            text = text.replace('{"Ref": "AWS::Partition"}', "<AWS::Partition>")
            granted.add(text)
    if synth.arn_prefix == "arn:aws":
        assert granted == allowed
    else:  # environment-agnostic: ARNs are joins of tokens; still one per configured model
        assert len(granted) == len(allowed) and all("foundation-model/" in g for g in granted)
        assert {g.rsplit("foundation-model/", 1)[1].split('"')[0] for g in granted} == {
            get_adapter(m).model_id for m in synth.config.allowed_models
        }


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_s3_is_granted_only_on_the_stacks_buckets_and_images_only_on_image_and_manifest_keys(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    images = images_bucket(synth)
    for rid, statement in statements(synth):
        actions = {a for a in as_list(statement["Action"]) if a.startswith("s3:")}
        if not actions:
            continue
        for resource in as_list(statement["Resource"]):
            assert resource != "*", (rid, statement)
            bucket, suffix = bucket_of(resource, synth)
            if bucket == images:
                assert suffix in IMAGES_BUCKET_GRANTS, (rid, suffix)
                allowed = IMAGES_BUCKET_GRANTS[suffix]
                if rid.startswith(NOTIFICATIONS_POLICY) and suffix == "":
                    allowed = {"s3:PutBucketNotification"}
                assert actions <= allowed, (rid, suffix, actions)


# -- buckets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_every_bucket_is_private_encrypted_owner_enforced_and_ssl_only(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::S3::BucketPolicy").values()
    }
    buckets = synth.resources("AWS::S3::Bucket")
    roles = set(synth.resources("AWS::IAM::Role"))  # e.g. CDK's auto-delete-objects provider
    assert buckets
    for rid, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
        ), rid
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), rid
        assert "AccessControl" not in props or props["AccessControl"] in ("Private", "LogDeliveryWrite"), rid
        assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] in (
            "BucketOwnerEnforced",
            "ObjectWriter",
        )
        denies = [
            s
            for s in policies.get(rid, [])
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denies and denies[0]["Action"] in ("s3:*", ["s3:*"]), f"{rid} accepts plain HTTP"
        for statement in policies.get(rid, []):
            if statement["Effect"] == "Allow":
                principal = statement.get("Principal", {})
                assert principal not in ("*", {"AWS": "*"}), (rid, statement)
                own_role = principal.get("AWS", {}).get("Fn::GetAtt", [None])[0] in roles
                assert ("Service" in principal and statement.get("Condition")) or own_role, (rid, statement)


# -- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_every_route_is_authenticated_and_preflight_never_reaches_code(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    methods = synth.resources("AWS::ApiGateway::Method")
    routes = {
        rid: m["Properties"] for rid, m in methods.items() if m["Properties"]["HttpMethod"] != "OPTIONS"
    }
    assert len(routes) >= 5
    for rid, props in routes.items():
        if props.get("OperationName") == "FollowLink":
            continue  # GET /links/{token}: the token's signature authorizes (test_links_construct.py)
        if synth.config.api_auth == "iam":
            assert props["AuthorizationType"] == "AWS_IAM", rid
        else:
            assert props.get("ApiKeyRequired") is True, rid
        # Validated by the function, not by API Gateway (test_api_construct.py, docs/decisions.md).
        assert "RequestValidatorId" not in props, rid
    for rid, m in methods.items():
        if m["Properties"]["HttpMethod"] == "OPTIONS":
            assert m["Properties"]["Integration"]["Type"] == "MOCK", rid


def test_api_key_auth_is_the_default(synthesized: Synthesized) -> None:
    assert synthesized.config.api_auth == "apiKey"
    assert synthesized.resources("AWS::ApiGateway::ApiKey") and synthesized.resources(
        "AWS::ApiGateway::UsagePlan"
    )


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_request_bodies_are_bounded(which: str, request: pytest.FixtureRequest) -> None:
    """API Gateway's model bounds every field (its hard payload limit is 10 MB); the API Lambda refuses
    anything over MAX_BODY_BYTES (413) before parsing; the workflow's input limit is 256 KiB."""
    synth: Synthesized = request.getfixturevalue(which)
    [model] = [
        m["Properties"]["Schema"]
        for m in synth.resources("AWS::ApiGateway::Model").values()
        if "prompt" in m["Properties"]["Schema"].get("properties", {})
    ]
    assert model["additionalProperties"] is False
    for name, schema in model["properties"].items():
        kinds = as_list(schema.get("type", []))
        if "string" in kinds:
            pattern = str(schema.get("pattern", ""))
            # Anchored at both ends: "$", or the request model's end of text "(?![\s\S])" (Python's "$"
            # also matches before a final newline).
            ends = pattern.endswith("$") or pattern.endswith(r"(?![\s\S])")
            anchored = pattern.startswith("^") and ends and not any(q in pattern for q in "*+")
            bounded = anchored and ",}" not in pattern
            assert "maxLength" in schema or "enum" in schema or bounded, f"{name} is unbounded"
        if "integer" in kinds or "number" in kinds:
            assert "maximum" in schema, f"{name} is unbounded"
    assert model["properties"]["prompt"]["maxLength"] == MAX_PROMPT_CHARS
    assert model["properties"]["count"]["maximum"] == MAX_IMAGES
    assert MAX_BODY_BYTES <= 256 * 1024


# -- logs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_nothing_logs_prompts_keys_or_whole_requests(which: str, request: pytest.FixtureRequest) -> None:
    """Prompts reach handler logs only at DEBUG (tests/reliability/test_logging.py); the functions log at
    INFO; no function logs its whole event; API Gateway does not trace request data; the state machines
    log without execution data (which holds the prompt)."""
    synth: Synthesized = request.getfixturevalue(which)
    for rid, function in synth.resources("AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        if "POWERTOOLS_SERVICE_NAME" in variables:
            assert variables.get("POWERTOOLS_LOG_LEVEL") in ("INFO", "WARNING", "ERROR"), rid
        assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() != "true", rid
        assert "POWERTOOLS_DEV" not in variables, rid
        for name, value in variables.items():
            if name.endswith("_SECRET_ARN"):  # names a Secrets Manager secret, read at run time
                assert isinstance(value, dict) and "Ref" in value, (rid, name)
                continue
            assert not any(word in name.upper() for word in ("SECRET", "PASSWORD", "TOKEN", "API_KEY")), (
                rid,
                name,
            )
            assert not (isinstance(value, str) and value.startswith(("AKIA", "ASIA"))), (rid, name)
    for stage in synth.resources("AWS::ApiGateway::Stage").values():
        for setting in stage["Properties"].get("MethodSettings", []):
            assert setting.get("DataTraceEnabled") is not True
    for rid, machine in synth.resources("AWS::StepFunctions::StateMachine").items():
        logging = machine["Properties"].get("LoggingConfiguration", {})
        assert logging.get("IncludeExecutionData") is False, rid

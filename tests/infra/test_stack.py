"""What the synthesized template says, with Template/Match (resources found by their properties, never
by hashed logical ids)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from image_pipeline.core.events import REQUEST_EVENT
from image_pipeline.models.registry import get_adapter, list_adapters

from stacks.api import HTTP_API_TIMEOUT, SYNC_WAIT_MARGIN_SECONDS
from stacks.functions import POWERTOOLS_LAYER_ACCOUNT, POWERTOOLS_LAYER_NAME
from stacks.nag import flatten_cfn_reference
from stacks.request_schema import image_request_schema
from stacks.workflow import ASL_FILE, HANDLERS
from tests.infra.conftest import VARIANT, Synthesized

OUR_HANDLERS = {**HANDLERS, "http_api": "image_pipeline.handlers.http_api.handler"}
#: The API's routes: every one a Lambda proxy integration of the HTTP API function.
ROUTES = [
    ("POST", "/images"),
    ("GET", "/images"),
    ("POST", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("GET", "/models"),
]
CONTRACT_ENV = {
    "IMAGES_BUCKET",
    "DEFAULT_MODEL",
    "ALLOWED_MODELS",
    "MAX_IMAGES_PER_REQUEST",
    "PRESIGN_EXPIRY_SECONDS",
    "MAP_MAX_CONCURRENCY",
    "BEDROCK_MAX_ATTEMPTS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
}


# -- helpers -----------------------------------------------------------------------------------------


def logical_id_where(synth: Synthesized, resource_type: str, **properties: Any) -> str:
    """The logical id of the one resource of a type whose properties include ``properties``."""
    found = [
        k
        for k, v in synth.resources(resource_type).items()
        if all(v["Properties"].get(p) == value for p, value in properties.items())
    ]
    assert len(found) == 1, f"{resource_type} {properties}: {found}"
    return found[0]


def function_id(synth: Synthesized, name: str) -> str:
    return logical_id_where(synth, "AWS::Lambda::Function", Handler=OUR_HANDLERS[name])


def role_of(synth: Synthesized, name: str) -> str:
    fn = synth.template_json["Resources"][function_id(synth, name)]
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def statements_of_role(synth: Synthesized, role: str) -> list[dict[str, Any]]:
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    for inline in synth.template_json["Resources"][role]["Properties"].get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """action -> flattened resources, over Allow statements."""
    out: dict[str, set[str]] = {}
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        for action in as_list(s["Action"]):
            out.setdefault(action, set()).update(flatten_cfn_reference(r) for r in as_list(s["Resource"]))
    return out


def images_bucket_id(synth: Synthesized) -> str:
    return next(
        k
        for k, v in synth.resources("AWS::S3::Bucket").items()
        if any(
            r.get("Id") == "expire-generated-images"
            for r in v["Properties"]["LifecycleConfiguration"]["Rules"]
        )
    )


def method(synth: Synthesized, http_method: str, path: str) -> dict[str, Any]:
    """The AWS::ApiGateway::Method for ``http_method`` on a resource path like ``/jobs/{id}``."""
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path_of(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref:  # the root resource
            return ""
        props = resources[ref["Ref"]]["Properties"]
        return f"{path_of(props['ParentId'])}/{props['PathPart']}"

    found = [
        m["Properties"]
        for m in synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == http_method and path_of(m["Properties"]["ResourceId"]) == path
    ]
    assert len(found) == 1, (http_method, path, len(found))
    return found[0]


def join_text(value: Any) -> str:
    """A template string that may hold references (Fn::Join), each reference written as <...>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return delimiter.join(join_text(i) for i in items)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    return json.dumps(value)


# -- storage -----------------------------------------------------------------------------------------


def test_images_bucket_is_private_encrypted_logged_and_expires_images(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "LoggingConfiguration": {
                    "DestinationBucketName": {"Ref": Match.any_value()},
                    "LogFilePrefix": "images-bucket/",
                },
                "LifecycleConfiguration": {
                    "Rules": Match.array_with(
                        [
                            Match.object_like(
                                {"Id": "expire-generated-images", "Status": "Enabled", "ExpirationInDays": 30}
                            )
                        ]
                    )
                },
                "VersioningConfiguration": Match.absent(),
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    # Auto-delete is off by default: no custom resource empties the bucket.
    assert not synthesized.resources("Custom::S3AutoDeleteObjects")


def test_images_bucket_policy_denies_plain_http(synthesized: Synthesized) -> None:
    bucket = images_bucket_id(synthesized)
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_access_logs_bucket_is_private_and_receives_the_images_bucket_logs(synthesized: Synthesized) -> None:
    images = synthesized.template_json["Resources"][images_bucket_id(synthesized)]
    logs_id = images["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    logs = synthesized.template_json["Resources"][logs_id]["Properties"]
    assert logs["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert logs["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}  # CloudFront logs
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}


def test_variant_bucket_is_versioned_expires_after_the_configured_days_and_is_destroyed(
    variant: Synthesized,
) -> None:
    bucket = variant.template_json["Resources"][images_bucket_id(variant)]
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-generated-images"]["ExpirationInDays"] == 7
    assert rules["expire-generated-images"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True
    assert bucket["DeletionPolicy"] == "Delete"
    assert variant.resources("Custom::S3AutoDeleteObjects")


# -- workflow ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["EXPRESS", "STANDARD"])
def test_state_machine_logs_all_events_without_data_and_traces(synthesized: Synthesized, kind: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": kind,
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": False,
                "Destinations": [
                    {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}}}
                ],
            },
            "TracingConfiguration": {"Enabled": True},
            "DefinitionS3Location": Match.object_like({"Key": Match.string_like_regexp(r"\.json$")}),
        },
    )


def workflow_machines(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """The per-request workflow's two state machines (not the batch's)."""
    batch = synthesized.stack.resolve(synthesized.stack.batch.state_machine.node.default_child.logical_id)  # type: ignore[union-attr]
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert batch in machines
    return {k: v for k, v in machines.items() if k != batch}


def test_both_state_machines_substitute_the_real_function_arns(synthesized: Synthesized) -> None:
    machines = workflow_machines(synthesized)
    assert sorted(m["Properties"]["StateMachineType"] for m in machines.values()) == ["EXPRESS", "STANDARD"]
    bus = next(iter(synthesized.resources("AWS::Events::EventBus")))
    expected = {
        "ValidateRequestFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "validate_request"), "Arn"]},
        "GenerateImageFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "generate_image"), "Arn"]},
        "BuildManifestFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "build_manifest"), "Arn"]},
        "EventBusName": {"Ref": bus},
    }
    for machine in machines.values():
        assert machine["Properties"]["DefinitionSubstitutions"] == expected


def test_deployed_definition_is_the_asl_file_and_substitution_leaves_no_placeholder(
    synthesized: Synthesized,
) -> None:
    """The definition asset is the ASL file byte for byte; filled in as CloudFormation does, it is valid
    JSON whose Task states call the functions of their handlers and has no ``${...}`` left."""
    for machine in workflow_machines(synthesized).values():
        props = machine["Properties"]
        asset = synthesized.outdir / f"asset.{props['DefinitionS3Location']['Key']}"
        text = asset.read_text()
        assert text == ASL_FILE.read_text()
        substitutions = {k: json.dumps(v) for k, v in props["DefinitionSubstitutions"].items()}
        filled = re.sub(
            r"\$\{(\w+)\}", lambda m, values=substitutions: values[m.group(1)].replace('"', "'"), text
        )
        assert "${" not in filled
        definition = json.loads(filled)
        validate = definition["States"]["ValidateRequest"]["Parameters"]["FunctionName"]
        assert function_id(synthesized, "validate_request") in validate
        generate = definition["States"]["GenerateImages"]["ItemProcessor"]["States"]["GenerateImage"]
        assert function_id(synthesized, "generate_image") in generate["Parameters"]["FunctionName"]
        manifest = definition["States"]["BuildManifest"]["Parameters"]["FunctionName"]
        assert function_id(synthesized, "build_manifest") in manifest


def test_state_machines_may_invoke_exactly_the_three_functions_and_put_events(
    synthesized: Synthesized,
) -> None:
    fns = {function_id(synthesized, n) for n in HANDLERS}
    bus = next(iter(synthesized.resources("AWS::Events::EventBus")))
    for machine in workflow_machines(synthesized).values():
        role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        actions = granted(statements_of_role(synthesized, role))
        assert actions["lambda:InvokeFunction"] == {f"<{f}.Arn>" for f in fns} | {f"<{f}.Arn>:*" for f in fns}
        assert actions["events:PutEvents"] == {f"<{bus}.Arn>"}


# -- functions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OUR_HANDLERS))
def test_function_runtime_architecture_layer_tracing_and_environment(
    synthesized: Synthesized, name: str
) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": OUR_HANDLERS[name],
            "Runtime": "python3.13",
            "Architectures": ["arm64"],
            "TracingConfig": {"Mode": "Active"},
            "Layers": [
                Match.string_like_regexp(
                    rf"^arn:aws:lambda:us-east-1:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:\d+$"
                )
            ],
            "LoggingConfig": {"LogGroup": {"Ref": Match.any_value()}},
        },
    )
    env = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, name)]["Properties"]
    variables = env["Environment"]["Variables"]
    assert set(variables) >= CONTRACT_ENV
    config = synthesized.config
    assert variables["IMAGES_BUCKET"] == {"Ref": images_bucket_id(synthesized)}
    assert variables["DEFAULT_MODEL"] == config.default_model == "stable-image-core"
    assert variables["ALLOWED_MODELS"] == ",".join(a.registry_id for a in list_adapters())
    assert variables["MAX_IMAGES_PER_REQUEST"] == "40"
    assert variables["PRESIGN_EXPIRY_SECONDS"] == "3600"
    assert variables["MAP_MAX_CONCURRENCY"] == "10"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "imagegen"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_the_asset_is_the_lambdas_directory_without_caches(synthesized: Synthesized) -> None:
    code = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "generate_image")]
    key = code["Properties"]["Code"]["S3Key"]
    asset = synthesized.outdir / f"asset.{key.removesuffix('.zip')}"
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}
    assert "image_pipeline/handlers/generate_image.py" in files
    assert "image_pipeline/models/registry.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def state_machine_id(synth: Synthesized, kind: str) -> str:
    return next(
        k
        for k, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineType"] == kind
    )


def test_http_api_knows_both_state_machines_and_waits_less_than_its_timeout(synthesized: Synthesized) -> None:
    fn = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "http_api")]["Properties"]
    variables = fn["Environment"]["Variables"]
    assert variables["JOBS_STATE_MACHINE_ARN"] == {"Ref": state_machine_id(synthesized, "STANDARD")}
    assert variables["SYNC_STATE_MACHINE_ARN"] == {"Ref": state_machine_id(synthesized, "EXPRESS")}
    # API Gateway's integration limit; the wait for a synchronous run leaves time to answer 504 itself.
    assert fn["Timeout"] == HTTP_API_TIMEOUT.to_seconds() == 29
    assert int(variables["SYNC_READ_TIMEOUT_SECONDS"]) == 29 - SYNC_WAIT_MARGIN_SECONDS > 0
    # With the web page, the page's origin is the one CORS origin of the function's answers.
    origin = join_text(variables["CORS_ALLOW_ORIGINS"])
    assert origin.startswith("https://<") and origin.endswith(".DomainName>")


# -- IAM ---------------------------------------------------------------------------------------------------


def test_no_bedrock_s3_or_states_action_is_granted_on_every_resource(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    for synth in (synthesized, variant):
        policies = [p["Properties"]["PolicyDocument"] for p in synth.resources("AWS::IAM::Policy").values()]
        for role in synth.resources("AWS::IAM::Role").values():
            policies += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
        for document in policies:
            for statement in document["Statement"]:
                actions = as_list(statement["Action"])
                if any(a.startswith(("bedrock:", "s3:", "states:")) for a in actions):
                    assert "*" not in as_list(statement["Resource"]), statement
                    assert not [a for a in actions if a.endswith(":*")], statement


def expected_model_arns(synth: Synthesized) -> set[str]:
    return {
        f"{synth.arn_prefix}:bedrock:{synth.region}::foundation-model/{get_adapter(m).model_id}"
        for m in synth.config.allowed_models
    }


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_bedrock_invoke_is_granted_on_exactly_the_configured_models(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    actions = granted(statements_of_role(synth, role_of(synth, "generate_image")))
    assert actions["bedrock:InvokeModel"] == expected_model_arns(synth)
    assert len(synth.config.allowed_models) == (6 if which == "synthesized" else 2)
    # No other function may call Bedrock.
    for name in ("validate_request", "build_manifest", "http_api"):
        assert not [
            a for a in granted(statements_of_role(synth, role_of(synth, name))) if a.startswith("bedrock:")
        ]


def test_each_function_gets_only_what_its_step_does(synthesized: Synthesized) -> None:
    bucket = f"<{images_bucket_id(synthesized)}.Arn>"
    own_logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    xray = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}

    def actions_of(name: str) -> dict[str, set[str]]:
        return {
            a: r
            for a, r in granted(statements_of_role(synthesized, role_of(synthesized, name))).items()
            if a not in own_logs | xray
        }

    assert actions_of("validate_request") == {}
    generate = actions_of("generate_image")
    assert generate.pop("s3:PutObject") == {f"{bucket}/*.png"}
    assert set(generate) == {"bedrock:InvokeModel"}
    assert actions_of("build_manifest") == {
        "s3:GetObject": {f"{bucket}/*.png"},
        "s3:PutObject": {f"{bucket}/*/manifest.json"},
        "s3:ListBucket": {bucket},
    }
    standard = state_machine_id(synthesized, "STANDARD")
    executions = {f"arn:aws:states:us-east-1:123456789012:execution:<{standard}.Name>:*"}
    assert actions_of("http_api") == {
        "states:StartSyncExecution": {f"<{state_machine_id(synthesized, 'EXPRESS')}>"},
        "states:StartExecution": {f"<{standard}>"},
        "states:DescribeExecution": executions,
        "states:GetExecutionHistory": executions,
        "s3:GetObject": {f"{bucket}/*.png"},
    }


def test_api_gateway_itself_may_start_no_workflow(synthesized: Synthesized) -> None:
    """No integration role: only the HTTP API function starts executions (after its checks)."""
    for role_id, role in synthesized.resources("AWS::IAM::Role").items():
        principals = json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
        if "apigateway.amazonaws.com" in principals:
            assert not [
                a for a in granted(statements_of_role(synthesized, role_id)) if a.startswith("states:")
            ]


# -- events ------------------------------------------------------------------------------------------------


def test_request_events_start_the_standard_workflow_with_the_detail(synthesized: Synthesized) -> None:
    standard = state_machine_id(synthesized, "STANDARD")
    bus = next(iter(synthesized.resources("AWS::Events::EventBus")))
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventBusName": {"Ref": bus},
            "EventPattern": {"detail-type": [REQUEST_EVENT]},
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Ref": standard},
                        "InputPath": "$.detail",
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}},
                        "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 8}),
                    }
                )
            ],
        },
    )


# -- API ---------------------------------------------------------------------------------------------------


def test_request_model_is_generated_from_the_pydantic_request(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Model",
        {"Name": "ImageRequest", "ContentType": "application/json", "Schema": image_request_schema()},
    )


def test_one_validator_checks_bodies_and_parameters_on_every_method(synthesized: Synthesized) -> None:
    validators = synthesized.resources("AWS::ApiGateway::RequestValidator")
    assert len(validators) == 1
    assert next(iter(validators.values()))["Properties"] == {
        "Name": "body-and-parameters",
        "RestApiId": {"Ref": next(iter(synthesized.resources("AWS::ApiGateway::RestApi")))},
        "ValidateRequestBody": True,
        "ValidateRequestParameters": True,
    }
    validator = next(iter(validators))
    for m in synthesized.resources("AWS::ApiGateway::Method").values():
        if m["Properties"]["HttpMethod"] != "OPTIONS":
            assert m["Properties"]["RequestValidatorId"] == {"Ref": validator}


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
    methods = synthesized.resources("AWS::ApiGateway::Method").values()
    assert {m["Properties"]["Integration"]["Type"] for m in methods} == {"AWS_PROXY", "MOCK"}
    assert sum(m["Properties"]["HttpMethod"] != "OPTIONS" for m in methods) == len(ROUTES)


@pytest.mark.parametrize("path", ["/images", "/jobs"])
def test_post_bodies_are_validated_against_the_request_model(synthesized: Synthesized, path: str) -> None:
    """A body that breaks the schema is answered 400 by API Gateway: the function is not even invoked."""
    props = method(synthesized, "POST", path)
    assert props["RequestModels"] == {"application/json": {"Ref": image_request_model(synthesized)}}
    assert props["RequestValidatorId"] == {
        "Ref": next(iter(synthesized.resources("AWS::ApiGateway::RequestValidator")))
    }
    statuses = {r["StatusCode"] for r in props["MethodResponses"]}
    assert {"400", "413", "415", "429", "502"} <= statuses
    assert ("202" if path == "/jobs" else "200") in statuses


def test_get_images_requires_a_prompt_and_takes_every_request_field(synthesized: Synthesized) -> None:
    props = method(synthesized, "GET", "/images")
    schema = image_request_schema()
    assert props["RequestParameters"] == {
        f"method.request.querystring.{name}": name == "prompt" for name in schema["properties"]
    }
    assert schema["required"] == ["prompt"]


def test_post_jobs_takes_an_idempotency_key_header(synthesized: Synthesized) -> None:
    props = method(synthesized, "POST", "/jobs")
    assert props["RequestParameters"] == {"method.request.header.Idempotency-Key": False}
    assert "409" in {r["StatusCode"] for r in props["MethodResponses"]}


def test_api_gateway_may_invoke_the_function_from_each_route(synthesized: Synthesized) -> None:
    """One permission per route of the deployed stage (and per route of the console's test-invoke)."""
    function = {"Fn::GetAtt": [function_id(synthesized, "http_api"), "Arn"]}
    sources = [
        join_text(p["Properties"]["SourceArn"]).split("/", 2)  # [api, stage, method/path]
        for p in synthesized.resources("AWS::Lambda::Permission").values()
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
            "ApiStages": [Match.object_like({"Stage": {"Ref": Match.any_value()}})],
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
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert {
        "BAD_REQUEST_BODY",
        "BAD_REQUEST_PARAMETERS",
        "INTEGRATION_TIMEOUT",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    } <= set(responses)
    body = responses["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"]
    assert body.startswith('{"error": "InvalidRequest"')
    assert responses["INTEGRATION_TIMEOUT"]["StatusCode"] == "504"
    timeout = json.loads(responses["INTEGRATION_TIMEOUT"]["ResponseTemplates"]["application/json"])
    assert timeout["error"] == "ExecutionTimedOut" and "POST /jobs" in timeout["message"]


def test_cors_allows_the_web_page_origin(synthesized: Synthesized) -> None:
    options = method(synthesized, "OPTIONS", "/images")
    headers = options["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
    origin = join_text(headers["method.response.header.Access-Control-Allow-Origin"])
    assert origin.startswith("'https://<") and origin.endswith(".DomainName>'")
    # API Gateway's own errors carry the same (single) origin, so the page can read them too.
    for response in synthesized.resources("AWS::ApiGateway::GatewayResponse").values():
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
        if props["HttpMethod"] != "OPTIONS":
            assert props["AuthorizationType"] == "AWS_IAM"
            assert props.get("ApiKeyRequired") in (None, False)
    fn = variant.resources("AWS::Lambda::Function")[function_id(variant, "http_api")]["Properties"]
    assert (
        fn["Environment"]["Variables"]["CORS_ALLOW_ORIGINS"] == "https://a.example.com,https://b.example.com"
    )
    stage = next(iter(variant.resources("AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 2
    assert VARIANT["apiAuth"] == variant.config.api_auth


def test_outputs_name_what_a_client_needs(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert {
        "ApiUrl",
        "ApiKeyId",
        "ImagesBucketName",
        "SyncStateMachineArn",
        "JobsStateMachineArn",
        "EventBusName",
        "WebUrl",
    } <= set(outputs)
    assert join_text(outputs["ApiUrl"]["Value"]).endswith("/v1/")


def test_web_page_is_pointed_at_the_api(synthesized: Synthesized) -> None:
    template: Template = synthesized.template
    template.resource_count_is("AWS::CloudFront::Distribution", 1)
    policy = next(iter(synthesized.resources("AWS::CloudFront::ResponseHeadersPolicy").values()))
    csp = join_text(
        policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"][
            "ContentSecurityPolicy"
        ]
    )
    api = next(iter(synthesized.resources("AWS::ApiGateway::RestApi")))
    assert f"connect-src 'self' https://<{api}>.execute-api.us-east-1.<AWS::URLSuffix>/v1/" in csp


def test_env_agnostic_synthesis_takes_the_layer_of_the_deployment_region(variant: Synthesized) -> None:
    assert variant.stack.region.startswith("${Token[")  # no account/Region: the layer ARN is a token
    for name in OUR_HANDLERS:
        fn = variant.resources("AWS::Lambda::Function")[function_id(variant, name)]["Properties"]
        (layer,) = fn["Layers"]
        assert re.fullmatch(
            rf"arn:aws:lambda:<AWS::Region>:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:\d+",
            join_text(layer),
        )

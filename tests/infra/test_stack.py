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

from stacks import mapping_templates as vtl
from stacks.functions import POWERTOOLS_LAYER_ACCOUNT, POWERTOOLS_LAYER_NAME
from stacks.nag import flatten_cfn_reference
from stacks.request_schema import image_request_schema
from stacks.workflow import ASL_FILE, HANDLERS
from tests.infra.conftest import VARIANT, Synthesized

OUR_HANDLERS = {**HANDLERS, "jobs_api": "image_pipeline.handlers.jobs_api.handler"}
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


def integration_templates(props: dict[str, Any]) -> dict[str, str]:
    """status code -> response template (application/json) of a method's integration."""
    return {
        r["StatusCode"]: join_text(r["ResponseTemplates"]["application/json"])
        for r in props["Integration"]["IntegrationResponses"]
    }


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


def test_both_state_machines_substitute_the_real_function_arns(synthesized: Synthesized) -> None:
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
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
    for machine in synthesized.resources("AWS::StepFunctions::StateMachine").values():
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
    for machine in synthesized.resources("AWS::StepFunctions::StateMachine").values():
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


def test_jobs_api_knows_both_state_machines(synthesized: Synthesized) -> None:
    fn = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "jobs_api")]
    variables = fn["Properties"]["Environment"]["Variables"]
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    by_type = {m["Properties"]["StateMachineType"]: k for k, m in machines.items()}
    assert variables["JOBS_STATE_MACHINE_ARN"] == {"Ref": by_type["STANDARD"]}
    assert variables["SYNC_STATE_MACHINE_ARN"] == {"Ref": by_type["EXPRESS"]}
    # With the web page, the page's origin is the one CORS origin of the Lambda's answers.
    origin = join_text(variables["CORS_ALLOW_ORIGIN"])
    assert origin.startswith("https://<") and origin.endswith(".DomainName>")


# -- IAM ---------------------------------------------------------------------------------------------------


def test_no_bedrock_or_s3_action_is_granted_on_every_resource(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    for synth in (synthesized, variant):
        policies = [p["Properties"]["PolicyDocument"] for p in synth.resources("AWS::IAM::Policy").values()]
        for role in synth.resources("AWS::IAM::Role").values():
            policies += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
        for document in policies:
            for statement in document["Statement"]:
                actions = as_list(statement["Action"])
                if any(a.startswith(("bedrock:", "s3:")) for a in actions):
                    assert "*" not in as_list(statement["Resource"]), statement
                    assert not [a for a in actions if a in ("s3:*", "bedrock:*")], statement


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
    for name in ("validate_request", "build_manifest", "jobs_api"):
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
    jobs = actions_of("jobs_api")
    assert jobs.pop("s3:GetObject") == {f"{bucket}/*.png"}
    standard = next(
        k
        for k, m in synthesized.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineType"] == "STANDARD"
    )
    executions = {f"arn:aws:states:us-east-1:123456789012:execution:<{standard}.Name>:*"}
    assert jobs == {"states:DescribeExecution": executions, "states:GetExecutionHistory": executions}


# -- events ------------------------------------------------------------------------------------------------


def test_request_events_start_the_standard_workflow_with_the_detail(synthesized: Synthesized) -> None:
    standard = next(
        k
        for k, m in synthesized.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineType"] == "STANDARD"
    )
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


def test_post_images_starts_the_express_workflow_synchronously(synthesized: Synthesized) -> None:
    props = method(synthesized, "POST", "/images")
    model = next(
        iter(
            k
            for k, v in synthesized.resources("AWS::ApiGateway::Model").items()
            if v["Properties"]["Name"] == "ImageRequest"
        )
    )
    assert props["RequestModels"] == {"application/json": {"Ref": model}}
    assert props["ApiKeyRequired"] is True
    integration = props["Integration"]
    assert integration["Type"] == "AWS"
    assert integration["IntegrationHttpMethod"] == "POST"
    assert join_text(integration["Uri"]).endswith(":states:action/StartSyncExecution")
    assert integration["PassthroughBehavior"] == "NEVER"
    assert integration["TimeoutInMillis"] == 29000
    request = join_text(integration["RequestTemplates"]["application/json"])
    express = next(
        k
        for k, m in synthesized.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineType"] == "EXPRESS"
    )
    assert f'"stateMachineArn": "<{express}>"' in request
    assert '"input": "$util.escapeJavaScript($input.body)' in request  # the body, unchanged
    assert '"name": "$context.requestId"' in request


def test_post_images_maps_every_execution_status_to_http(synthesized: Synthesized) -> None:
    templates = integration_templates(method(synthesized, "POST", "/images"))
    ok = templates["200"]
    assert "$input.path('$.output')" in ok
    assert '#if($status == "TIMED_OUT")\n#set($context.responseOverride.status = 504)' in ok
    assert (
        '#elseif($error == "InvalidRequest" || $error == "AllImagesFiltered")\n'
        "#set($context.responseOverride.status = 400)" in ok
    )
    assert '#elseif($error == "ImagesThrottled")\n#set($context.responseOverride.status = 429)' in ok
    assert "#else\n#set($context.responseOverride.status = 502)" in ok
    assert "$util.parseJson($message)" in ok and "errorMessage" in ok
    assert '{"error": "$util.escapeJavaScript($error)' in ok
    assert set(templates) == {"200", "400", "503"}
    assert "InvalidExecutionInput" in templates["400"]
    codes = {r["StatusCode"] for r in method(synthesized, "POST", "/images")["MethodResponses"]}
    assert codes == set(vtl.SYNC_STATUSES)


def test_get_images_requires_a_prompt_and_builds_the_input_from_the_query(synthesized: Synthesized) -> None:
    props = method(synthesized, "GET", "/images")
    assert props["RequestParameters"] == {
        "method.request.querystring.prompt": True,
        "method.request.querystring.count": False,
    }
    integration = props["Integration"]
    assert join_text(integration["Uri"]).endswith(":states:action/StartSyncExecution")
    request = join_text(integration["RequestTemplates"]["application/json"])
    assert "$input.params().querystring" in request and '\\"prompt\\": \\"' in request
    assert (
        integration_templates(props)["200"]
        == integration_templates(method(synthesized, "POST", "/images"))["200"]
    )


def test_post_jobs_starts_the_standard_workflow_named_by_the_idempotency_key(
    synthesized: Synthesized,
) -> None:
    props = method(synthesized, "POST", "/jobs")
    assert props["RequestParameters"] == {"method.request.header.Idempotency-Key": False}
    integration = props["Integration"]
    assert join_text(integration["Uri"]).endswith(":states:action/StartExecution")
    request = join_text(integration["RequestTemplates"]["application/json"])
    assert "headers.get('Idempotency-Key')" in request
    assert f"$key.matches('{vtl.IDEMPOTENCY_KEY_PATTERN}')" in request
    assert "#set($name = $context.requestId)" in request
    templates = integration_templates(props)
    assert set(templates) == {"202", "400", "503"}
    assert '{"job_id": "$job", "status": "running", "status_url": "/jobs/$job"}' in templates["202"]
    assert (
        '#if($type.contains("ExecutionAlreadyExists"))\n#set($context.responseOverride.status = 409)'
        in (templates["400"])
    )
    codes = {r["StatusCode"] for r in props["MethodResponses"]}
    assert codes == set(vtl.JOBS_STATUSES)


@pytest.mark.parametrize(("http_method", "path"), [("GET", "/jobs/{id}"), ("GET", "/models")])
def test_jobs_and_models_are_lambda_proxy_routes(
    synthesized: Synthesized, http_method: str, path: str
) -> None:
    props = method(synthesized, http_method, path)
    assert props["Integration"]["Type"] == "AWS_PROXY"
    assert function_id(synthesized, "jobs_api") in join_text(props["Integration"]["Uri"])
    assert props["ApiKeyRequired"] is True


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


def test_cors_allows_the_web_page_origin(synthesized: Synthesized) -> None:
    options = method(synthesized, "OPTIONS", "/images")
    headers = options["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
    origin = join_text(headers["method.response.header.Access-Control-Allow-Origin"])
    assert origin.startswith("'https://<") and origin.endswith(".DomainName>'")
    ok = integration_templates(method(synthesized, "POST", "/images"))["200"]
    assert '$origin == "https://<' in ok


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
    ok = integration_templates(method(variant, "POST", "/images"))["200"]
    assert '#if($origin == "https://a.example.com" || $origin == "https://b.example.com")' in ok
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


# -- the mapping templates, rendered -----------------------------------------------------------------------
# API Gateway's VTL is Velocity 1.7 with $input/$util/$context; airspeed (a Python Velocity, as LocalStack
# uses) renders the synthesized templates with small stand-ins for those objects. Skipped without it.


class _Input:
    def __init__(self, body: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None):
        self.body = body
        self._params = {"header": headers or {}, "querystring": query or {}, "path": {}}

    def path(self, expression: str) -> Any:
        value: Any = json.loads(self.body) if self.body else {}
        for part in expression.removeprefix("$").split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def params(self) -> dict[str, dict[str, str]]:
        return self._params


class _Util:
    @staticmethod
    def escapeJavaScript(text: str) -> str:
        named = {'"': '\\"', "'": "\\'", "\\": "\\\\", "/": "\\/", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
        encoded = text.encode("utf-16-be")
        units = [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]
        return "".join(named.get(chr(u), chr(u) if 32 <= u < 0x7F else f"\\u{u:04X}") for u in units)

    @staticmethod
    def parseJson(text: str) -> Any:
        return json.loads(text)


@pytest.fixture(scope="module")
def render() -> Any:
    airspeed = pytest.importorskip("airspeed")
    java = airspeed.__additional_methods__[str]
    java["matches"] = lambda s, p: re.fullmatch(p, s) is not None
    java["contains"] = lambda s, x: x in s
    java["lastIndexOf"] = lambda s, x: s.rfind(x)
    java["substring"] = lambda s, a, b=None: s[a:b]
    # Velocity keeps "\\'" as is (the regex of a literal \'); airspeed unescapes it to \'.
    java["replaceAll"] = lambda s, p, r: s.replace("\\'", "'") if p == "\\'" else re.sub(p, r, s)

    def render(template: str, body: str = "", **params: dict[str, str]) -> tuple[Any, dict[str, Any]]:
        override: dict[str, Any] = {"status": None, "header": {}}
        context = {"requestId": "req-1", "responseOverride": override}
        # airspeed cannot parse a hyphen in a reference (API Gateway can)
        text = template.replace("header.Access-Control-Allow-Origin", "header.AllowOrigin")
        out = airspeed.Template(text).merge(
            {
                "input": _Input(body, params.get("headers"), params.get("query")),
                "util": _Util(),
                "context": context,
            }
        )
        return json.loads(out), override

    return render


def lambda_cause(error: str, message: str) -> str:
    return json.dumps({"errorType": error, "errorMessage": message, "stackTrace": ["  File ..."]})


@pytest.mark.parametrize(
    ("execution", "status", "body"),
    [
        (
            {"status": "SUCCEEDED", "output": '{"status": "SUCCEEDED", "images": []}'},
            None,
            {"status": "SUCCEEDED", "images": []},
        ),
        (
            {
                "status": "FAILED",
                "error": "InvalidRequest",
                "cause": lambda_cause("InvalidRequest", 'count: at most 40 "images"'),
            },
            400,
            {"error": "InvalidRequest", "message": 'count: at most 40 "images"'},
        ),
        (
            {
                "status": "FAILED",
                "error": "AllImagesFiltered",
                "cause": lambda_cause("AllImagesFiltered", "it's filtered"),
            },
            400,
            {"error": "AllImagesFiltered", "message": "it's filtered"},
        ),
        (
            {
                "status": "FAILED",
                "error": "ImagesThrottled",
                "cause": lambda_cause("ImagesThrottled", "slow down"),
            },
            429,
            {"error": "ImagesThrottled", "message": "slow down"},
        ),
        (
            {"status": "FAILED", "error": "ImagesFailed", "cause": lambda_cause("ImagesFailed", "no image")},
            502,
            {"error": "ImagesFailed", "message": "no image"},
        ),
        (
            {"status": "FAILED", "error": "States.Runtime", "cause": "not JSON"},
            502,
            {"error": "States.Runtime", "message": "not JSON"},
        ),
        (
            {"status": "TIMED_OUT"},
            504,
            {"error": "ExecutionTimedOut", "message": "the workflow did not finish in time"},
        ),
    ],
)
def test_rendered_sync_response_sets_status_and_error_body(
    synthesized: Synthesized, render: Any, execution: dict[str, Any], status: int | None, body: Any
) -> None:
    template = integration_templates(method(synthesized, "POST", "/images"))["200"]
    web = join_text(
        synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "jobs_api")]["Properties"][
            "Environment"
        ]["Variables"]["CORS_ALLOW_ORIGIN"]
    )
    rendered, override = render(template, json.dumps(execution), headers={"Origin": web})
    assert rendered == body
    assert override["status"] == status
    assert override["header"]["AllowOrigin"] == web


def test_rendered_requests_pass_the_input_through_exactly(synthesized: Synthesized, render: Any) -> None:
    body = {"prompt": 'it\'s a "red" car / \\ é 🚗\n', "count": 2}
    post = join_text(
        method(synthesized, "POST", "/images")["Integration"]["RequestTemplates"]["application/json"]
    )
    rendered, _ = render(post, json.dumps(body))
    assert json.loads(rendered["input"]) == body and rendered["name"] == "req-1"

    get = join_text(
        method(synthesized, "GET", "/images")["Integration"]["RequestTemplates"]["application/json"]
    )
    for query, expected in [
        ({"prompt": body["prompt"]}, {"prompt": body["prompt"]}),
        ({"prompt": "cat", "count": "3"}, {"prompt": "cat", "count": 3}),
        ({"prompt": "cat", "count": "three"}, {"prompt": "cat", "count": "three"}),
    ]:
        rendered, _ = render(get, query=query)
        assert json.loads(rendered["input"]) == expected


@pytest.mark.parametrize(
    ("headers", "body", "name"),
    [
        ({}, {"prompt": "x"}, "req-1"),
        ({"Idempotency-Key": "order-7"}, {"prompt": "x"}, "order-7"),
        ({"idempotency-key": "order-8"}, {"prompt": "x"}, "order-8"),
        ({}, {"prompt": "x", "idempotency_key": "body-1"}, "body-1"),
        ({"Idempotency-Key": "has space"}, {"prompt": "x"}, vtl.INVALID_NAME_MARKER),
        ({"Idempotency-Key": "k" * 65}, {"prompt": "x"}, vtl.INVALID_NAME_MARKER),
        ({"Idempotency-Key": "one"}, {"prompt": "x", "idempotency_key": "two"}, vtl.INVALID_NAME_MARKER),
    ],
)
def test_rendered_job_request_names_the_execution(
    synthesized: Synthesized, render: Any, headers: dict[str, str], body: dict[str, Any], name: str
) -> None:
    template = join_text(
        method(synthesized, "POST", "/jobs")["Integration"]["RequestTemplates"]["application/json"]
    )
    rendered, _ = render(template, json.dumps(body), headers=headers)
    assert rendered["name"] == name
    assert json.loads(rendered["input"]) == body


def test_rendered_job_responses(synthesized: Synthesized, render: Any) -> None:
    templates = integration_templates(method(synthesized, "POST", "/jobs"))
    arn = "arn:aws:states:us-east-1:123456789012:execution:Jobs:order-7"
    rendered, _ = render(templates["202"], json.dumps({"executionArn": arn}))
    assert rendered == {"job_id": "order-7", "status": "running", "status_url": "/jobs/order-7"}
    for error_type, status, error in [
        ("com.amazonaws.swf.service.v2.model#ExecutionAlreadyExists", 409, "IdempotencyKeyReused"),
        ("InvalidName", 400, "InvalidRequest"),
        ("InvalidExecutionInput", 400, "InvalidRequest"),
        ("ThrottlingException", 429, "TooManyRequests"),
        ("AccessDeniedException", 502, "ExecutionNotStarted"),
    ]:
        rendered, override = render(
            templates["400"],
            json.dumps({"__type": error_type, "message": "m"}),
            headers={"Idempotency-Key": "order-7"},
        )
        assert (override["status"], rendered["error"]) == (status, error)
    assert (
        "GET /jobs/order-7"
        in render(
            templates["400"], '{"__type": "ExecutionAlreadyExists"}', headers={"Idempotency-Key": "order-7"}
        )[0]["message"]
    )

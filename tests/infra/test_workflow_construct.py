"""The workflow construct (``stacks/workflow.py``) in the synthesized stack: its two state machines (the
ASL file with the real function ARNs, logged and traced), what they may invoke, and the model grant."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match
from image_pipeline.models.registry import get_adapter

from stacks.workflow import ASL_FILE, HANDLERS
from tests.infra.stack_template import (
    function_id,
    granted,
    images_bucket_id,
    role_of,
    statements_of_role,
    workflow_machines,
)
from tests.infra.synthesis import Synthesized


@pytest.mark.parametrize("kind", ["STANDARD"])
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


def test_the_state_machine_substitutes_the_real_function_arns(synthesized: Synthesized) -> None:
    machines = workflow_machines(synthesized)
    # One Standard state machine: the synchronous routes start jobs too (no Express state machine).
    assert sorted(m["Properties"]["StateMachineType"] for m in machines.values()) == ["STANDARD"]
    bus = next(iter(synthesized.resources("AWS::Events::EventBus")))
    expected = {
        "ValidateRequestFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "validate_request"), "Arn"]},
        "GenerateImageFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "generate_image"), "Arn"]},
        "AdmissionFunctionArn": {"Fn::GetAtt": [function_id(synthesized, "admission"), "Arn"]},
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
    assert len(synth.config.allowed_models) == (3 if which == "synthesized" else 2)
    # No other function may call Bedrock.
    for name in ("validate_request", "build_manifest", "http_api"):
        assert not [
            a for a in granted(statements_of_role(synth, role_of(synth, name))) if a.startswith("bedrock:")
        ]


def test_the_manifests_cost_estimate_uses_the_functions_memory(synthesized: Synthesized) -> None:
    """core/cost.py estimates Lambda GB-seconds at the memory the stack gives the workflow's functions."""
    from image_pipeline.core.cost import (
        GENERATE_IMAGE_MEMORY_MB,
        STEP_MEMORY_MB,
        VALIDATE_REQUEST_MEMORY_MB,
    )

    functions = synthesized.resources("AWS::Lambda::Function")
    memory = {
        name: functions[function_id(synthesized, name)]["Properties"]["MemorySize"] for name in HANDLERS
    }
    assert memory == {
        "validate_request": VALIDATE_REQUEST_MEMORY_MB,
        "admission": STEP_MEMORY_MB,
        "generate_image": GENERATE_IMAGE_MEMORY_MB,
        "build_manifest": STEP_MEMORY_MB,
    }


def test_the_stored_images_an_operation_reads_are_readable_only_as_image_keys(
    synthesized: Synthesized,
) -> None:
    """Issue 16: the first step (checks) and the branch (reads once) get s3:GetObject on the images
    bucket's ``*.png`` keys and nothing else; the manifest step keeps its own reading of images."""
    bucket = images_bucket_id(synthesized)
    for name in ("validate_request", "generate_image"):
        actions = granted(statements_of_role(synthesized, role_of(synthesized, name)))
        readable = actions.get("s3:GetObject", set())
        assert len(readable) == 1, (name, readable)
        (resource,) = readable
        assert bucket in resource and resource.endswith("/*.png"), (name, resource)
        assert not [a for a in actions if a in {"s3:GetObjectVersion", "s3:*", "s3:Get*"}], name
    assert "s3:ListBucket" not in granted(
        statements_of_role(synthesized, role_of(synthesized, "validate_request"))
    )

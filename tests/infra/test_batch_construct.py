"""The batch construct, synthesized alone in a scratch stack, and its ASL file (offline, no Docker)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template
from image_pipeline.core.batch import BATCH_PREFIX, BATCH_SUFFIX, RESULTS_PREFIX

from stacks.batch import BATCH_ASL_FILE, HANDLERS, MAP_LABEL, SYNC_EVENTS_RULE, BatchConstruct
from stacks.functions import FunctionDefaults
from tests.infra.asl import PLACEHOLDER, state_machines, strings
from tests.infra.synthesis import ENV, nag_findings

#: cdk-nag findings of the construct alone, each to be acknowledged by the stack (stacks/nag.py):
#: IAM5 - the wildcards below (X-Ray/log delivery "*", <fn>:* of grantInvoke, batches/*, batch-results/*,
#:        */manifest.json, <per-request machine>:*, the batch's own executions and map runs);
#: L1   - Python 3.13 is the runtime the Powertools layer is pinned for;
#: SQS3 - the dead-letter queue of the rule's target has no DLQ of its own.
EXPECTED_NAG_RULES = {"AwsSolutions-IAM5", "AwsSolutions-L1", "AwsSolutions-SQS3"}


def scratch(outdir: Path) -> tuple[cdk.App, cdk.Stack, BatchConstruct]:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "BatchOnly", env=ENV)
    bucket = s3.Bucket(
        stack,
        "Images",
        event_bridge_enabled=True,
        enforce_ssl=True,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        server_access_logs_prefix="access-logs/",
    )
    requests = sfn.StateMachine(
        stack,
        "Jobs",
        definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "Pass")),
        state_machine_type=sfn.StateMachineType.STANDARD,
    )
    defaults = FunctionDefaults.create(stack, environment={"IMAGES_BUCKET": bucket.bucket_name})
    batch = BatchConstruct(
        stack,
        "Batch",
        bucket=bucket,
        per_request_state_machine=requests,
        defaults=defaults,
        max_concurrency=4,
        tolerated_failure_percentage=5,
    )
    return app, stack, batch


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, BatchConstruct, cdk.Stack]:
    _, stack, batch = scratch(tmp_path_factory.mktemp("cdk.out.batch"))
    return Template.from_stack(stack), batch, stack


@pytest.fixture(scope="module")
def template(built: tuple[Template, BatchConstruct, cdk.Stack]) -> Template:
    return built[0]


def only(template: Template, resource_type: str, props: Mapping[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return dict(next(iter(found.values())))


def logical_id(template: Template, resource_type: str, props: Mapping[str, Any]) -> str:
    found = template.find_resources(resource_type, {"Properties": props})
    assert len(found) == 1, sorted(found)
    return next(iter(found))


def statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to ``role_id``."""
    result = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            result.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return result


def by_sid(template: Template, role_id: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements(template, role_id) if "Sid" in s}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def object_arn(bucket_id: str, pattern: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{pattern}"]]}


# -- the ASL file --------------------------------------------------------------------------------


def test_asl_placeholders_are_the_constructs_substitutions(
    built: tuple[Template, BatchConstruct, cdk.Stack],
) -> None:
    _, batch, _ = built
    text = BATCH_ASL_FILE.read_text()
    asl = json.loads(text)
    in_strings = {m for s in strings(asl) for m in PLACEHOLDER.findall(s)}
    assert set(PLACEHOLDER.findall(text)) == in_strings  # placeholders only inside string values
    assert in_strings == set(batch.definition_substitutions)


def test_asl_transitions_reach_existing_states() -> None:
    asl = json.loads(BATCH_ASL_FILE.read_text())
    for path, machine in state_machines(asl):
        names = set(machine["States"])
        assert machine["StartAt"] in names, path
        for name, state in machine["States"].items():
            targets = [state.get("Next"), state.get("Default")]
            targets += [c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])]
            for target in filter(None, targets):
                assert target in names, f"{path}/{name} -> {target}"
            terminal = state["Type"] in {"Succeed", "Fail", "Choice"} or state.get("End") or state.get("Next")
            assert terminal, f"{path}/{name} has no way out"


def test_asl_distributed_map() -> None:
    state = json.loads(BATCH_ASL_FILE.read_text())["States"]["RunRequests"]
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert state["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert state["MaxConcurrencyPath"] == "$.max_concurrency"
    assert state["ToleratedFailurePercentagePath"] == "$.tolerated_failure_percentage"
    assert state["Label"] == MAP_LABEL
    assert state["ResultWriter"]["Parameters"]["Prefix"].startswith(RESULTS_PREFIX)
    run = state["ItemProcessor"]["States"]["RunRequest"]
    assert run["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert run["Catch"][0]["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]


# -- resources -----------------------------------------------------------------------------------


def test_state_machine_is_standard_logged_and_traced(template: Template) -> None:
    machine = only(
        template, "AWS::StepFunctions::StateMachine", {"DefinitionSubstitutions": Match.any_value()}
    )
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert set(props["DefinitionSubstitutions"]) == {
        "PrepareBatchFunctionArn",
        "BuildBatchManifestFunctionArn",
        "RequestStateMachineArn",
        "ResultsBucketName",
    }
    assert props["DefinitionSubstitutions"]["RequestStateMachineArn"] == {"Ref": logical_id_of_jobs(template)}


def logical_id_of_jobs(template: Template) -> str:
    machines_ = template.find_resources("AWS::StepFunctions::StateMachine")
    return next(k for k in machines_ if k.startswith("Jobs"))


def test_functions_handlers_environment_and_tracing(template: Template) -> None:
    prepare = only(template, "AWS::Lambda::Function", {"Handler": HANDLERS["prepare_batch"]})["Properties"]
    assert prepare["TracingConfig"] == {"Mode": "Active"}
    assert {
        "BATCH_MAX_CONCURRENCY": "4",
        "BATCH_TOLERATED_FAILURE_PERCENTAGE": "5",
        "BATCH_MAX_LINES": "10000",
    }.items() <= prepare["Environment"]["Variables"].items()
    manifest = only(template, "AWS::Lambda::Function", {"Handler": HANDLERS["build_batch_manifest"]})
    assert manifest["Properties"]["Timeout"] < 900  # the Task state's TimeoutSeconds


def test_upload_rule_starts_the_batch_with_bucket_and_key(template: Template) -> None:
    bucket_id = next(iter(template.find_resources("AWS::S3::Bucket")))
    rule = only(template, "AWS::Events::Rule")["Properties"]
    assert "EventBusName" not in rule  # S3 sends to the default bus
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": bucket_id}]},
            "object": {"key": [{"wildcard": f"{BATCH_PREFIX}*{BATCH_SUFFIX}"}]},
        },
    }
    [target] = rule["Targets"]
    assert target["Arn"]["Ref"].startswith("BatchStateMachine")
    assert target["InputTransformer"]["InputPathsMap"] == {
        "detail-bucket-name": "$.detail.bucket.name",
        "detail-object-key": "$.detail.object.key",
    }
    assert json.loads(
        target["InputTransformer"]["InputTemplate"]
        .replace("<detail-bucket-name>", '"b"')
        .replace("<detail-object-key>", '"k"')
    ) == {"bucket": "b", "key": "k"}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    queue = only(template, "AWS::SQS::Queue")["Properties"]
    assert queue["SqsManagedSseEnabled"] is True


def test_state_machine_role_is_scoped(template: Template) -> None:
    machine_id = logical_id(
        template, "AWS::StepFunctions::StateMachine", {"DefinitionSubstitutions": Match.any_value()}
    )
    role_id = template.to_json()["Resources"][machine_id]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    bucket_id = next(iter(template.find_resources("AWS::S3::Bucket")))
    sids = by_sid(template, role_id)

    assert sids["StartRequests"]["Action"] == "states:StartExecution"
    assert sids["StartRequests"]["Resource"] == {"Ref": logical_id_of_jobs(template)}
    assert sorted(sids["WatchRequests"]["Action"]) == ["states:DescribeExecution", "states:StopExecution"]
    assert sorted(sids["SyncExecutionEvents"]["Action"]) == [
        "events:DescribeRule",
        "events:PutRule",
        "events:PutTargets",
    ]
    assert sids["SyncExecutionEvents"]["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, f":events:us-west-2:123456789012:rule/{SYNC_EVENTS_RULE}"],
        ]
    }
    assert sids["ReadItemsWriteResults"]["Resource"] == object_arn(bucket_id, f"{RESULTS_PREFIX}*")

    everything = statements(template, role_id)
    star = [s for s in everything if "*" in as_list(s["Resource"])]
    assert {a.split(":")[0] for s in star for a in as_list(s["Action"])} <= {"logs", "xray"}
    map_policy = [s for s in everything if "states:StartExecution" in as_list(s["Action"]) and "Sid" not in s]
    assert [s["Resource"] for s in map_policy] == [{"Ref": machine_id}]  # its own map-run children
    redrive = next(s for s in everything if s["Action"] == "states:RedriveExecution")
    assert f"/{MAP_LABEL}:*" in json.dumps(redrive["Resource"])


def test_function_roles_are_scoped(template: Template) -> None:
    resources = template.to_json()["Resources"]
    bucket_id = next(iter(template.find_resources("AWS::S3::Bucket")))

    def role_of(handler: str) -> str:
        fn = only(template, "AWS::Lambda::Function", {"Handler": handler})
        return str(fn["Properties"]["Role"]["Fn::GetAtt"][0])

    prepare = by_sid(template, role_of(HANDLERS["prepare_batch"]))
    assert prepare["ReadBatchFiles"]["Resource"] == object_arn(bucket_id, f"{BATCH_PREFIX}*")
    assert prepare["WriteBatchItems"]["Resource"] == object_arn(bucket_id, f"{RESULTS_PREFIX}*")
    manifest = by_sid(template, role_of(HANDLERS["build_batch_manifest"]))
    assert manifest["DescribeRequests"]["Action"] == "states:DescribeExecution"
    assert "Jobs" in json.dumps(manifest["DescribeRequests"]["Resource"])
    assert manifest["ReadItemsAndManifests"]["Resource"] == [
        object_arn(bucket_id, f"{RESULTS_PREFIX}*"),
        object_arn(bucket_id, "*/manifest.json"),
    ]
    assert manifest["WriteBatchManifest"]["Resource"] == object_arn(bucket_id, f"{RESULTS_PREFIX}*")
    for role in (role_of(HANDLERS["prepare_batch"]), role_of(HANDLERS["build_batch_manifest"])):
        assert resources[role]["Properties"].get("ManagedPolicyArns") is None
        for statement in statements(template, role):
            assert not any(
                a.endswith("*") and a.startswith(("s3:", "states:")) for a in as_list(statement["Action"])
            )


def test_settings_are_validated_at_synthesis(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bad", env=ENV)
    bucket = s3.Bucket(stack, "B")
    requests = sfn.StateMachine(
        stack, "J", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    )
    defaults = FunctionDefaults.create(stack, environment={})
    with pytest.raises(ValueError, match="tolerated_failure_percentage"):
        BatchConstruct(
            stack,
            "Batch",
            bucket=bucket,
            per_request_state_machine=requests,
            defaults=defaults,
            tolerated_failure_percentage=150,
        )


def test_cdk_nag_reports_only_the_expected_rules(tmp_path: Path) -> None:
    from cdk_nag import AwsSolutionsChecks

    app, stack, _ = scratch(tmp_path / "out")
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks())
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    errors = nag_findings(tmp_path / "out", severity="error")
    ours = {rule: {p for p in paths if p.startswith("BatchOnly/Batch/")} for rule, paths in errors.items()}
    assert {rule for rule, paths in ours.items() if paths} == EXPECTED_NAG_RULES
    assert all("UndeliveredUploads" in p for p in ours["AwsSolutions-SQS3"])
    assert all(p.endswith("/Function/Resource") for p in ours["AwsSolutions-L1"])

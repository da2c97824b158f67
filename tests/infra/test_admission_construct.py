"""Admission control in the synthesized stack (``stacks/admission.py``): the slots and the waiters
tables; the DynamoDB actions the two functions that hand slots on (Admission, GenerateImage) are
granted, which are exactly the operations ``core/admission.DynamoSlotStore`` sends, on exactly the two
tables; the policy that lets them wake a waiting branch; the keeper's schedule; the ASL's slot states
as deployed; and the configured quotas (a bad ``imagegen:modelConcurrency`` stops synthesis)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from image_pipeline.core.admission import (
    COUNT,
    PLACE,
    QUEUE_KEY,
    TICKET_TTL_SECONDS,
    WAITING_COUNTER_PLACE,
    DynamoSlotStore,
    SlotStore,
    Ticket,
)
from image_pipeline.core.metric_names import (
    ADMISSION_NO_SLOT,
    ADMISSION_SLOTS_IN_USE,
    ADMISSION_WAIT_SECONDS,
    ADMISSION_WAITING,
    MODEL_DIMENSION,
    NAMESPACE,
    SERVICE,
)

from stacks.admission import (
    ENDED_WITHOUT_RELEASES,
    KEEPER_EVENT,
    KEEPER_INTERVAL,
    QUEUE_ACTIONS,
    QUEUE_LENGTH_ACTIONS,
    SLOT_ACTIONS,
    TICKET_TTL_ATTRIBUTE,
    WAKE_ACTIONS,
    WAKE_RESOURCE,
)
from stacks.config import ImagegenConfig
from tests.infra.stack_template import (
    OUR_HANDLERS,
    function_id,
    granted,
    role_of,
    statements_of_role,
    workflow_machines,
)
from tests.infra.synthesis import Synthesized

#: The functions that take, hand on and give back slots: AcquireSlot/ReleaseSlot's, and GenerateImage's
#: hand-off right after the model's answer.
CONNECTED = ("admission", "generate_image")


def _table(synth: Synthesized, key_schema: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
    tables = {
        k: v
        for k, v in synth.resources("AWS::DynamoDB::GlobalTable").items()
        if v["Properties"]["KeySchema"] == key_schema
    }
    assert len(tables) == 1, list(tables)
    return next(iter(tables.items()))


def _slots_table(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    return _table(synth, [{"AttributeName": "model", "KeyType": "HASH"}])


def _waiters_table(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    return _table(
        synth,
        [{"AttributeName": QUEUE_KEY, "KeyType": "HASH"}, {"AttributeName": PLACE, "KeyType": "RANGE"}],
    )


class RecordingClient:
    """A stand-in for the low-level DynamoDB client: records (operation, table) of every call, refusing
    any method that is not a DynamoDB operation in botocore's service model, and answers as DynamoDB
    does when nothing is there (a take answers with its new count)."""

    def __init__(self) -> None:
        model = botocore.session.get_session().get_service_model("dynamodb")
        self.operations = {xform_name(name): name for name in model.operation_names}
        self.calls: dict[str, set[str]] = defaultdict(set)

    def __getattr__(self, method: str) -> Any:
        operation = self.operations[method]  # KeyError: not a DynamoDB operation

        def call(**request: Any) -> dict[str, Any]:
            self.calls[request["TableName"]].add(operation)
            if operation == "UpdateItem" and request.get("ReturnValues") == "UPDATED_NEW":
                return {"Attributes": {COUNT: {"N": "1"}}}
            if operation == "Query":
                return {"Items": []}
            return {}

        return call


def _store_operations() -> dict[str, set[str]]:
    """table -> the DynamoDB operations ``DynamoSlotStore`` sends, over every method of the store's
    protocol (``SlotStore``: a method added there without a call here fails the test)."""
    client = RecordingClient()
    store = DynamoSlotStore(client, "slots", "waiters")
    ticket = Ticket("exec-1#0", "token-1", "2026-11-30T20:00:00.000Z#exec-1#0", 1_764_532_800.0)
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("take", ("m", "exec-1#0", 4, 1_764_534_300.0)),
        ("give_back", ("m", "exec-1#0", None)),
        ("give_back", ("m", "exec-1#0", 1_764_534_300.0)),
        ("hand_over", ("m", "exec-1#0", "exec-2#0", 1_764_534_300.0)),
        ("hand_over", ("m", "exec-1#0", "exec-2#0", 1_764_534_300.0, 1_764_534_200.0)),
        ("renew", ("m", "exec-1#0", 1_764_534_200.0, 1_764_534_300.0)),
        ("read", ("m",)),
        ("enqueue", ("m", ticket)),
        ("oldest", ("m", 3)),
        ("claim", ("m", ticket)),
        ("requeue", ("m", ticket)),
        ("waiting", ("m",)),
        ("recount", ("m",)),
    ]
    protocol = {n for n, v in vars(SlotStore).items() if callable(v) and not n.startswith("_")}
    assert {name for name, _ in calls} == protocol
    for name, args in calls:
        getattr(store, name)(*args)
    return dict(client.calls)


def test_the_slots_table(synthesized: Synthesized) -> None:
    _, table = _slots_table(synthesized)
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert props["Replicas"][0]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TimeToLiveSpecification" not in props  # a slot's lease is reclaimed by a write, never expired
    assert table["DeletionPolicy"] == "Delete"  # slots are short-lived state


def test_the_waiters_table_keys_a_ticket_by_model_and_place_and_expires_it(synthesized: Synthesized) -> None:
    """The queue: partition key the model, sort key the ticket's place (strings), the TTL attribute the
    store writes on every ticket (epoch seconds, TICKET_TTL_SECONDS after it was written)."""
    _, table = _waiters_table(synthesized)
    props = table["Properties"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": QUEUE_KEY, "AttributeType": "S"},
        {"AttributeName": PLACE, "AttributeType": "S"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TICKET_TTL_ATTRIBUTE, "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert props["Replicas"][0]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Delete"
    assert "GlobalSecondaryIndexes" not in props and "LocalSecondaryIndexes" not in props
    # What the store writes: a ticket item with that attribute, a Number of whole seconds.
    written: list[dict[str, Any]] = []

    class Client(RecordingClient):
        def put_item(self, **request: Any) -> dict[str, Any]:
            written.append(request)
            return {}

        def update_item(self, **request: Any) -> dict[str, Any]:
            return {}

    since = 1_764_532_800.5
    DynamoSlotStore(Client(), "slots", "waiters").enqueue(
        "m", Ticket("exec-1#0", "token-1", "2026-11-30T20:00:00.000Z#exec-1#0", since)
    )
    (put,) = written
    assert put["TableName"] == "waiters"
    assert {QUEUE_KEY, PLACE} <= set(put["Item"])
    assert put["Item"][TICKET_TTL_ATTRIBUTE] == {"N": str(int(since) + TICKET_TTL_SECONDS)}


def test_the_grants_are_exactly_the_operations_the_store_sends(synthesized: Synthesized) -> None:
    """The store's operations (recorded, and checked against botocore's DynamoDB model) are the
    documented constants, table by table; IAM's action for each is the operation's name."""
    used = _store_operations()
    assert used == {
        "slots": {a.removeprefix("dynamodb:") for a in SLOT_ACTIONS},
        "waiters": {a.removeprefix("dynamodb:") for a in QUEUE_ACTIONS},
    }


@pytest.mark.parametrize("name", CONNECTED)
def test_each_connected_function_gets_exactly_its_actions_on_exactly_the_two_tables(
    synthesized: Synthesized, name: str
) -> None:
    slots, _ = _slots_table(synthesized)
    waiters, _ = _waiters_table(synthesized)
    slots_arn, waiters_arn = f"<{slots}.Arn>", f"<{waiters}.Arn>"
    rights = granted(statements_of_role(synthesized, role_of(synthesized, name)))
    on_slots = {a for a, resources in rights.items() if slots_arn in resources}
    on_waiters = {a for a, resources in rights.items() if waiters_arn in resources}
    assert on_slots == set(SLOT_ACTIONS)
    assert on_waiters == set(QUEUE_ACTIONS)
    # Nothing wider: no index, no pattern, no other table's ARN written from these tables.
    for resources in rights.values():
        for resource in resources:
            if slots in resource or waiters in resource:
                assert resource in (slots_arn, waiters_arn), resource
    if name == "admission":  # its only DynamoDB grants are these
        dynamodb = {a: r for a, r in rights.items() if a.startswith("dynamodb:")}
        assert set(dynamodb) == set(SLOT_ACTIONS) | set(QUEUE_ACTIONS)
        assert all(r <= {slots_arn, waiters_arn} for r in dynamodb.values())
    variables = synthesized.template_json["Resources"][function_id(synthesized, name)]["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["ADMISSION_TABLE"] == {"Ref": slots}
    assert variables["ADMISSION_WAITERS_TABLE"] == {"Ref": waiters}
    assert json.loads(variables["MODEL_CONCURRENCY"]) == {}


def test_no_other_function_may_touch_the_tables(synthesized: Synthesized) -> None:
    """Besides the two, only the HTTP API reads the queue's length (tests/infra/test_queue_reading.py):
    no other function is granted anything on either table."""
    slots, _ = _slots_table(synthesized)
    waiters, _ = _waiters_table(synthesized)
    others = [n for n in OUR_HANDLERS if n not in CONNECTED]
    assert "http_api" in others
    for other in others:
        theirs = granted(statements_of_role(synthesized, role_of(synthesized, other)))
        touching = {a for a, rs in theirs.items() for r in rs if slots in r or waiters in r}
        assert touching == (set(QUEUE_LENGTH_ACTIONS) if other == "http_api" else set()), other


def test_the_admission_function_reads_only_cancellation_markers_besides(synthesized: Synthesized) -> None:
    """S3: only to look for its job's cancellation marker (a waiting branch of a cancelled job is woken
    without a slot); no model, no state machine action but waking a branch."""
    statements = statements_of_role(synthesized, role_of(synthesized, "admission"))
    rights = granted(statements)
    assert not [a for a in rights if a.startswith("bedrock:")]
    assert {a for a in rights if a.startswith("states:")} == set(WAKE_ACTIONS)
    assert {a for a in rights if a.startswith("s3:")} == {"s3:ListBucket"}
    listing = [
        s
        for s in statements
        if "s3:ListBucket" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert [s["Condition"] for s in listing] == [{"StringLike": {"s3:prefix": ["cancellations/*"]}}]


def test_the_wake_policy_sends_task_responses_for_the_two_functions_only(synthesized: Synthesized) -> None:
    """SendTaskSuccess/Failure/Heartbeat take no resource type (the Service Authorization Reference):
    '*' is the only resource IAM honours for them. One policy, attached to both roles and no other,
    not referencing the state machine (whose definition names the functions), and not among the
    functions' DependsOn: no dependency cycle."""
    policies = {
        k: v
        for k, v in synthesized.resources("AWS::IAM::Policy").items()
        if any(
            a.startswith("states:SendTask")
            for s in v["Properties"]["PolicyDocument"]["Statement"]
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )
    }
    assert len(policies) == 1, list(policies)
    ((policy_id, policy),) = policies.items()
    props = policy["Properties"]
    assert WAKE_RESOURCE == "*"
    assert props["PolicyDocument"]["Statement"] == [
        {"Action": sorted(WAKE_ACTIONS), "Effect": "Allow", "Resource": WAKE_RESOURCE}
    ]
    assert sorted(r["Ref"] for r in props["Roles"]) == sorted(role_of(synthesized, n) for n in CONNECTED)
    assert "Users" not in props and "Groups" not in props
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert not any(m in json.dumps(policy) for m in machines)
    resources = synthesized.template_json["Resources"]
    for name in CONNECTED:
        depends = resources[function_id(synthesized, name)].get("DependsOn", [])
        assert policy_id not in depends, name


def test_the_keeper_sweeps_every_minute(synthesized: Synthesized) -> None:
    """An EventBridge rule on EventBridge's shortest rate invokes the Admission function with the
    ``sweep`` action, and may (a Lambda permission for events.amazonaws.com from that rule)."""
    assert KEEPER_INTERVAL.to_minutes() == 1
    rules = {
        k: v
        for k, v in synthesized.resources("AWS::Events::Rule").items()
        if "ScheduleExpression" in v["Properties"]
    }
    assert len(rules) == 1, list(rules)
    ((rule_id, rule),) = rules.items()
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "rate(1 minute)"
    assert props["State"] == "ENABLED"
    admission = function_id(synthesized, "admission")
    (target,) = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [admission, "Arn"]}
    assert json.loads(target["Input"]) == KEEPER_EVENT == {"action": "sweep"}
    permissions = [
        p["Properties"]
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if p["Properties"].get("SourceArn") == {"Fn::GetAtt": [rule_id, "Arn"]}
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [admission, "Arn"]},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
        }
    ]


def test_the_outputs_name_the_two_tables(synthesized: Synthesized) -> None:
    """An operator finds the queue (docs/operations.md, "Admission control") by the stack's outputs."""
    outputs = synthesized.template_json["Outputs"]
    slots, _ = _slots_table(synthesized)
    waiters, _ = _waiters_table(synthesized)
    assert outputs["AdmissionSlotsTableName"]["Value"] == {"Ref": slots}
    assert outputs["AdmissionWaitersTableName"]["Value"] == {"Ref": waiters}
    assert WAITING_COUNTER_PLACE in outputs["AdmissionWaitersTableName"]["Description"]


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_the_dashboard_shows_each_allowed_models_queue(which: str, request: pytest.FixtureRequest) -> None:
    """Per allowed model: slots in use and branches waiting (Maximum), the time waited (p50, p99) and
    the throttled takes, the metrics ``handlers/admission.py`` records with the model's dimension."""
    synth: Synthesized = request.getfixturevalue(which)
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"]).replace('\\"', '"')
    assert synth.config.allowed_models
    for model in synth.config.allowed_models:
        for metric, stats in (
            (ADMISSION_SLOTS_IN_USE, ["Maximum"]),
            (ADMISSION_WAITING, ["Maximum"]),
            (ADMISSION_WAIT_SECONDS, ["p50", "p99"]),
            (ADMISSION_NO_SLOT, ["Sum"]),
        ):
            for stat in stats:
                series = f'["{NAMESPACE}","{metric}","{MODEL_DIMENSION}","{model}","service","{SERVICE}",{{'
                at = body.find(series)
                while at != -1 and f'"stat":"{stat}"' not in body[at : body.find("}", at)]:
                    at = body.find(series, at + 1)
                assert at != -1, (model, metric, stat)
    assert "waiting in the queue" in body
    assert "Admission: takes throttled (NoSlot, each a retry)" in body  # NoSlot: a throttled take


def _slot_states(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """The Map branch's states of the per-request workflow as deployed (its definition asset)."""
    (machine,) = workflow_machines(synth).values()
    asset = synth.outdir / f"asset.{machine['Properties']['DefinitionS3Location']['Key']}"
    definition = json.loads(asset.read_text())
    states: dict[str, dict[str, Any]] = definition["States"]["GenerateImages"]["ItemProcessor"]["States"]
    return states


def test_acquire_slot_waits_for_its_task_token(synthesized: Synthesized) -> None:
    """AcquireSlot invokes the Admission function with its task token and its execution's start (the
    ticket's place) and waits for the token; a lost wake-up ends in States.Timeout, retried before the
    catch-all (the take finds the slot handed over); ``States.ALL`` comes last."""
    acquire = _slot_states(synthesized)["AcquireSlot"]
    assert acquire["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    params = acquire["Parameters"]
    assert params["FunctionName"] == "${AdmissionFunctionArn}"
    assert params["Payload"] == {
        "action": "acquire",
        "model.$": "$.model",
        "execution_name.$": "$.execution_name",
        "execution_start.$": "$$.Execution.StartTime",
        "index.$": "$.image.index",
        "task_token.$": "$$.Task.Token",
    }
    errors = [r["ErrorEquals"] for r in acquire["Retry"]]
    assert ["States.Timeout"] in errors and ["NoSlot"] in errors
    assert errors[-1] == ["States.ALL"]
    assert errors.index(["States.Timeout"]) < errors.index(["States.ALL"])
    timeout = acquire["Retry"][errors.index(["States.Timeout"])]
    assert timeout["MaxAttempts"] >= 1
    assert isinstance(acquire["TimeoutSeconds"], int)
    assert "HeartbeatSeconds" not in acquire  # nobody heartbeats a waiting branch
    assert [c["Next"] for c in acquire["Catch"]] == ["ReleaseSlotAfterFailure"]


@pytest.mark.parametrize("state", ["ReleaseSlot", "ReleaseSlotAfterFailure"])
def test_the_release_states_invoke_and_do_not_wait(synthesized: Synthesized, state: str) -> None:
    release = _slot_states(synthesized)[state]
    assert release["Resource"] == "arn:aws:states:::lambda:invoke"
    assert release["Parameters"]["FunctionName"] == "${AdmissionFunctionArn}"
    assert release["Parameters"]["Payload"]["action"] == "release"


def test_the_map_is_not_the_limit(synthesized: Synthesized) -> None:
    env = synthesized.template_json["Resources"][function_id(synthesized, "validate_request")]["Properties"]
    assert env["Environment"]["Variables"]["MAP_MAX_CONCURRENCY"] == "40"


def test_the_configured_quotas_reach_the_function(tmp_path: Any) -> None:
    config = ImagegenConfig.from_mapping({"modelConcurrency": '{"stable-image-core": 4}'})
    assert config.model_concurrency == {"stable-image-core": 4}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('{"stable-image-core": 0}', "a quota of 0 would never let a call through"),
        ('{"stable-image-core": -3}', "a quota of -3 would never let a call through"),
        ('{"stable-image-core": "many"}', "not 'many'"),
        ('{"stable-image-core": 1.5}', "not 1.5"),
        ("four", "not a JSON object"),
        ('{"dall-e-3": 4}', "unknown model(s) dall-e-3"),
    ],
)
def test_a_bad_quota_stops_synthesis(value: str, words: str) -> None:
    with pytest.raises(ValueError, match="imagegen:modelConcurrency") as raised:
        ImagegenConfig.from_mapping({"modelConcurrency": value})
    assert words in str(raised.value)


def test_an_execution_that_ends_without_its_releases_is_forgotten(synthesized: Synthesized) -> None:
    """Step Functions' status-change event of a jobs execution that stopped, timed out or failed invokes
    the Admission function with ``forget`` and the execution's name (its holders' prefix)."""
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    rules = [
        (k, v["Properties"])
        for k, v in synthesized.resources("AWS::Events::Rule").items()
        if v["Properties"].get("EventPattern", {}).get("detail", {}).get("status")
        == list(ENDED_WITHOUT_RELEASES)
    ]
    assert len(rules) == 1
    ((rule_id, props),) = rules
    pattern = props["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    (arn,) = pattern["detail"]["stateMachineArn"]
    (machine_id,) = [m for m in machines if arn == {"Ref": m}]
    assert "Jobs" in machine_id
    assert set(ENDED_WITHOUT_RELEASES) == {"ABORTED", "TIMED_OUT", "FAILED"}  # not SUCCEEDED: all released
    (target,) = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id(synthesized, "admission"), "Arn"]}
    transformer = target["InputTransformer"]
    assert json.loads(
        transformer["InputTemplate"].replace("<detail-name>", '"NAME"').replace('""NAME""', '"NAME"')
    ) == {"action": "forget", "execution_name": "NAME"}
    assert transformer["InputPathsMap"] == {"detail-name": "$.detail.name"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    assert any(
        p["Properties"].get("SourceArn") == {"Fn::GetAtt": [rule_id, "Arn"]}
        for p in synthesized.resources("AWS::Lambda::Permission").values()
    )

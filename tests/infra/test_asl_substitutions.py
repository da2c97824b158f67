"""The ASL file and the construct agree: placeholders, substitutions, and state transitions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.batch import BATCH_ASL_FILE
from stacks.workflow import ASL_FILE
from tests.infra.asl import PLACEHOLDER, keys, state_machines, strings, transitions
from tests.infra.synthesis import Synthesized


@pytest.fixture(scope="module")
def asl_text() -> str:
    return ASL_FILE.read_text()


@pytest.fixture(scope="module")
def asl(asl_text: str) -> dict[str, Any]:
    return json.loads(asl_text)


def test_placeholders_equal_the_substitutions_the_construct_passes(
    asl_text: str, synthesized: Synthesized
) -> None:
    placeholders = set(PLACEHOLDER.findall(asl_text))
    batch_placeholders = set(PLACEHOLDER.findall(BATCH_ASL_FILE.read_text()))
    assert placeholders == set(synthesized.stack.workflow.definition_substitutions)
    assert batch_placeholders == set(synthesized.stack.batch.definition_substitutions)
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert sorted(machines) == sorted(
        synthesized.stack.resolve(m.node.default_child.logical_id)  # type: ignore[union-attr]
        for m in (
            synthesized.stack.workflow.standard,
            synthesized.stack.batch.state_machine,
        )
    )
    batch_id = synthesized.stack.resolve(synthesized.stack.batch.state_machine.node.default_child.logical_id)  # type: ignore[union-attr]
    for logical_id, machine in machines.items():
        expected = batch_placeholders if logical_id == batch_id else placeholders
        assert set(machine["Properties"]["DefinitionSubstitutions"]) == expected, logical_id


def test_the_lambda_placeholders_are_the_three_task_functions(asl_text: str) -> None:
    placeholders = set(PLACEHOLDER.findall(asl_text))
    assert {
        "ValidateRequestFunctionArn",
        "GenerateImageFunctionArn",
        "BuildManifestFunctionArn",
    } <= placeholders


def test_placeholders_are_only_inside_string_values(asl_text: str, asl: dict[str, Any]) -> None:
    in_values = [m for s in strings(asl) for m in PLACEHOLDER.findall(s)]
    assert len(in_values) == len(PLACEHOLDER.findall(asl_text)), "a placeholder outside a string value"
    assert not [k for k in keys(asl) if PLACEHOLDER.search(k)], "a placeholder in a key"
    # Each placeholder is a whole string (an ARN or a name), never part of a longer one.
    assert all(PLACEHOLDER.fullmatch(s) for s in strings(asl) if PLACEHOLDER.search(s))


def test_substituted_definition_is_valid_json_without_leftovers(asl_text: str) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:Imagegen-Fn-AbC123"
    substituted = json.loads(PLACEHOLDER.sub(arn, asl_text))
    assert "${" not in json.dumps(substituted)


def test_every_transition_target_exists(asl: dict[str, Any]) -> None:
    for where, machine in state_machines(asl):
        states = machine["States"]
        assert machine["StartAt"] in states, where
        for name, state in states.items():
            for target in transitions(state):
                assert target in states, f"{where}/{name} -> {target} does not exist"


def test_every_state_is_reachable_and_every_path_ends(asl: dict[str, Any]) -> None:
    for where, machine in state_machines(asl):
        states = machine["States"]
        seen: set[str] = set()
        todo = [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(transitions(states[name]))
        assert seen == set(states), f"{where}: unreachable {sorted(set(states) - seen)}"
        for name, state in states.items():
            ends = state.get("End") is True or state["Type"] in ("Succeed", "Fail", "Choice")
            assert ends or "Next" in state, f"{where}/{name} neither ends nor goes on"


def test_task_states_invoke_lambda_through_the_placeholders(asl: dict[str, Any]) -> None:
    functions = {}
    for _, machine in state_machines(asl):
        for name, state in machine["States"].items():
            if state["Type"] == "Task" and state["Resource"] in {
                "arn:aws:states:::lambda:invoke",
                "arn:aws:states:::lambda:invoke.waitForTaskToken",  # AcquireSlot waits for its token
            }:
                functions[name] = state["Parameters"]["FunctionName"]
    assert functions == {
        "ValidateRequest": "${ValidateRequestFunctionArn}",
        "AcquireSlot": "${AdmissionFunctionArn}",
        "GenerateImage": "${GenerateImageFunctionArn}",
        "ReleaseSlot": "${AdmissionFunctionArn}",
        "ReleaseSlotAfterFailure": "${AdmissionFunctionArn}",
        "BuildManifest": "${BuildManifestFunctionArn}",
    }

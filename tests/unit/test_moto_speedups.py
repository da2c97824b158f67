"""imagegen.runtime.moto_speedups: moto's interpreter parses each JSONPath and each definition once and reuses
its clients, and behaves as before (the whole workflow suite runs with them on)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import jsonpath_ng
import jsonpath_ng.ext
import jsonpath_ng.parser
import pytest
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_events,
)
from moto.stepfunctions.parser.asl.utils import boto_client, json_path
from moto.stepfunctions.parser.backend import execution_worker

from imagegen.runtime import moto_speedups
from imagegen.runtime.engine import asl_path

ASL = asl_path()
SMALL = {"model": "nova-canvas", "width": 320, "height": 320}


@pytest.fixture
def applied() -> Iterator[None]:
    """The speed-ups as the engine applies them; afterwards, as they were before the test."""
    was_applied = moto_speedups.is_applied()
    assert moto_speedups.apply()
    yield
    if not was_applied:
        moto_speedups.restore()


def test_apply_patches_every_parse_and_client_user_and_restore_puts_moto_back() -> None:
    was_applied = moto_speedups.is_applied()
    moto_speedups.restore()
    worker = execution_worker.ExecutionWorker

    def current() -> tuple[Any, ...]:
        return (
            json_path.parse,
            result_path.parse,
            jsonpath_ng.ext.parse,
            lambda_eval_utils.boto_client_for,
            worker._get_evaluation_entrypoint,
        )

    originals = current()
    assert originals[0] is jsonpath_ng.ext.parse and originals[1] is jsonpath_ng.parse
    assert originals[3] is boto_client.boto_client_for
    try:
        assert moto_speedups.apply() and moto_speedups.apply()  # idempotent
        assert all(now is not then for now, then in zip(current(), originals, strict=True))
        moto_speedups.restore()
        assert current() == originals
    finally:
        if was_applied:
            moto_speedups.apply()


def test_a_path_is_parsed_once_and_gives_the_same_answers(applied: None) -> None:
    path = "$.speedups_test_only.items[1].seed"
    misses = json_path.parse.misses  # type: ignore[attr-defined]
    first = json_path.parse(path)
    second = json_path.parse(path)
    assert first is second
    assert json_path.parse.misses == misses + 1  # type: ignore[attr-defined]
    data = {"speedups_test_only": {"items": [{"seed": 1}, {"seed": 2}]}}
    assert [m.value for m in first.find(data)] == [
        m.value for m in jsonpath_ng.ext.parser.parse(path).find(data)
    ]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every real JSONPath parse (PLY tables built) by path text, from a cold cache."""
    counted: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = jsonpath_ng.parser.JsonPathParser.parse

    def counting(self: Any, string: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            counted[string] += 1
        return original(self, string, *args, **kwargs)

    monkeypatch.setattr(jsonpath_ng.parser.JsonPathParser, "parse", counting)
    moto_speedups.clear_parse_caches()
    return counted


def test_two_executions_parse_each_distinct_path_once(
    applied: None, engine: Any, parses: collections.Counter[str]
) -> None:
    request = {"prompt": "parse once", "count": 3, **SMALL}
    assert engine.run(request).status == "SUCCEEDED"
    first = dict(parses)
    result = engine.run({**request, "count": 5})
    assert result.status == "SUCCEEDED" and result.output["succeeded"] == 5
    assert first, "the workflow evaluated no JSONPath"
    assert parses == collections.Counter(first)  # the second execution parsed nothing new
    assert set(parses.values()) == {1}  # and the first parsed each path once, not once per branch


def test_moto_as_shipped_parses_paths_again(engine: Any, parses: collections.Counter[str]) -> None:
    """The counter the test above relies on does see repeated parses when the speed-ups are off."""
    was_applied = moto_speedups.is_applied()
    moto_speedups.restore()
    try:
        assert engine.run({"prompt": "as shipped", "count": 3, **SMALL}).status == "SUCCEEDED"
    finally:
        if was_applied:
            moto_speedups.apply()
    assert max(parses.values()) >= 3  # the Map's per-image paths, once per branch at least


def test_one_client_per_service_and_role_until_the_engine_forgets_them(applied: None, engine: Any) -> None:
    role = StateCredentials(role_arn="arn:aws:iam::123456789012:role/imagegen-offline")
    first = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=role)
    same_role = StateCredentials(role_arn=role.role_arn)
    assert (
        lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=same_role)
        is first
    )
    other_role = StateCredentials(role_arn="arn:aws:iam::123456789012:role/other")
    assert (
        lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=other_role)
        is not first
    )
    assert (
        lambda_eval_utils.boto_client_for(region="eu-west-1", service="lambda", state_credentials=role)
        is not first
    )
    assert (
        state_task_service_events.boto_client_for(
            region="us-east-1", service="events", state_credentials=role
        )
        is not first
    )
    moto_speedups.forget_clients()
    assert (
        lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=role)
        is not first
    )


def test_the_reused_lambda_client_routes_every_invoke(applied: None, engine: Any) -> None:
    moto_speedups.forget_clients()
    before = dict(engine.router.invocations)
    for count in (2, 5):
        assert engine.run({"prompt": "routed", "count": count, **SMALL}).status == "SUCCEEDED"
    calls = {name: engine.router.invocations[name] - before[name] for name in before}
    assert calls["imagegen-generate-image"] == 7
    assert calls["imagegen-validate-request"] == calls["imagegen-build-manifest"] == 2
    services = [client.meta.service_model.service_name for client in moto_speedups.reused_clients()]
    assert services.count("lambda") == 1  # nine Invokes, one client, each answered by the router


def test_an_unknown_moto_layout_is_left_alone_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    was_applied = moto_speedups.is_applied()
    moto_speedups.restore()
    try:
        monkeypatch.setattr(result_path, "parse", lambda path: path)  # as if moto had changed
        with pytest.warns(UserWarning, match="not applied"):
            assert not moto_speedups.apply()
        assert not moto_speedups.is_applied()
        assert json_path.parse is jsonpath_ng.ext.parse
    finally:
        monkeypatch.undo()
        if was_applied:
            moto_speedups.apply()


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)]
)
def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(moto_speedups.ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(moto_speedups.ENV_SWITCH, value)
    assert moto_speedups.enabled_by_environment() is on


def _entrypoint_of(definition: str) -> Any:
    """What moto's ``ExecutionWorker`` evaluates for a state machine with this definition."""
    worker = SimpleNamespace(
        _evaluation_details=SimpleNamespace(state_machine_details=SimpleNamespace(definition=definition))
    )
    return execution_worker.ExecutionWorker._get_evaluation_entrypoint(worker)  # type: ignore[arg-type]


def test_a_definition_is_parsed_once_and_each_execution_gets_its_own_program(applied: None) -> None:
    definition = ASL.read_text()
    moto_speedups.clear_parse_caches()
    first, second = _entrypoint_of(definition), _entrypoint_of(definition)
    assert moto_speedups.program_parses() == 1
    assert first is not second and type(first) is type(second)
    # a deep copy: no state object is shared between the two executions' programs
    first_states, second_states = first.states.states, second.states.states
    assert list(first_states) == list(second_states) and "GenerateImages" in first_states
    assert all(first_states[name] is not second_states[name] for name in first_states)


def test_a_definition_that_does_not_parse_raises_every_time(applied: None) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException

    moto_speedups.clear_parse_caches()
    for _ in range(2):
        with pytest.raises(ASLParserException):
            _entrypoint_of('{"StartAt": "Nowhere", "States": {')
    assert moto_speedups.program_parses() == 0


def _history(engine: Any, request: dict[str, Any]) -> list[tuple[str, str | None]]:
    result = engine.run(request)
    assert result.status == "SUCCEEDED", result
    events = engine.sfn.get_execution_history(executionArn=result.arn, maxResults=1000)["events"]
    named = ("stateEnteredEventDetails", "stateExitedEventDetails")
    return [
        (event["type"], next((event[key]["name"] for key in named if key in event), None)) for event in events
    ]


def test_a_copied_program_runs_as_a_freshly_parsed_one(engine: Any) -> None:
    """The same request, with the definition parsed for the execution (moto as shipped) and with a copy
    of the cached program: the same states entered and left, the same events, in the same order."""
    request = {"prompt": "same run", "count": 1, "seed": 7, **SMALL}
    was_applied = moto_speedups.is_applied()
    moto_speedups.restore()
    try:
        shipped = _history(engine, request)
    finally:
        moto_speedups.apply()
    try:
        copied = _history(engine, request)
        assert moto_speedups.program_parses() >= 1
    finally:
        if not was_applied:
            moto_speedups.restore()
    assert copied == shipped
    assert ("MapStateEntered", "GenerateImages") in shipped and shipped[-1][0] == "ExecutionSucceeded"

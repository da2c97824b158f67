"""imagegen.runtime.moto_speedups: the fixes are entered and left with the engine and put moto back exactly,
refuse a moto they were not written for, reach every module that binds what they replace, and change how
often moto parses and makes clients, not what the workflow does (the workflow suite runs with them on, and
once more with them off: ``make test``)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
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
from imagegen.runtime.moto_speedups import MotoFixes, UnsupportedMoto

ROOT = Path(__file__).resolve().parents[2]
ASL = asl_path()
SMALL = {"model": "stable-image-core"}
MARK = "__imagegen_moto_fix__"


@contextlib.contextmanager
def moto_as_shipped(engine: Any) -> Iterator[None]:
    """moto unchanged for the block, whether or not the engine runs its fixes."""
    if engine.moto_fixes is None:
        yield
    else:
        with engine.moto_fixes.suspended():
            yield


@pytest.fixture
def fixes(engine: Any) -> Iterator[MotoFixes]:
    """The engine's fixes as it runs them (a set of the test's own when it runs without them)."""
    if engine.moto_fixes is not None:
        yield engine.moto_fixes
    else:
        with MotoFixes() as own:
            yield own


@pytest.fixture
def own_fixes(engine: Any) -> Iterator[MotoFixes]:
    """A set of the test's own, entered over moto as shipped (the engine's suspended meanwhile)."""
    with moto_as_shipped(engine), MotoFixes() as own:
        yield own


def _functions() -> dict[tuple[str, str], Any]:
    """Every function (and class attribute of moto's ExecutionWorker) in moto's and jsonpath-ng's loaded
    modules, by (module, name)."""
    found = {
        (name, key): value
        for name, module in list(sys.modules.items())
        if module is not None and name.split(".")[0] in ("moto", "jsonpath_ng")
        for key, value in list(vars(module).items())
        if callable(value) and not isinstance(value, type | types.ModuleType)
    }
    for key, value in vars(execution_worker.ExecutionWorker).items():
        found[("ExecutionWorker", key)] = value
    return found


def _marked(functions: dict[tuple[str, str], Any]) -> set[tuple[str, str]]:
    return {where for where, value in functions.items() if getattr(value, MARK, False)}


# -- lifecycle ------------------------------------------------------------------------------------


def test_entering_replaces_the_functions_and_leaving_puts_every_one_back(engine: Any) -> None:
    with moto_as_shipped(engine):
        fixes = MotoFixes()
        with fixes:
            during = _functions()  # after entering: it imports every module it patches
            patched = {(getattr(o, "__name__", ""), a) for o, a in fixes.patched()}
        after = _functions()
        assert not fixes.patched() and not fixes.applied
        # moto's own functions are back
        assert after[(json_path.__name__, "parse")] is jsonpath_ng.ext.parse
        assert after[(result_path.__name__, "parse")] is jsonpath_ng.parse
        assert after[(lambda_eval_utils.__name__, "boto_client_for")] is boto_client.boto_client_for
    assert _marked(during) == patched
    assert ("ExecutionWorker", "_get_evaluation_entrypoint") in patched
    assert (boto_client.__name__, "boto_client_for") in patched
    assert (json_path.__name__, "parse") in patched and (result_path.__name__, "parse") in patched
    assert not _marked(after)
    # and nothing else changed
    assert all(after[where] is value for where, value in during.items() if where not in patched)


def test_the_engine_enters_the_fixes_at_start_and_leaves_them_at_stop() -> None:
    """A fresh process (the session's engine holds this one's): every function that was moto's before the
    engine started is moto's again after it stopped, and the fixes were in while it ran."""
    script = r"""
import importlib, json, sys, types
from imagegen.runtime import moto_speedups
from imagegen.runtime.engine import EngineConfig, OfflineEngine

for binding in moto_speedups.client_factory_bindings() + moto_speedups.jsonpath_parse_bindings():
    importlib.import_module(binding.module)
worker = importlib.import_module("moto.stepfunctions.parser.backend.execution_worker").ExecutionWorker

def functions():
    found = {
        f"{name}.{key}": value
        for name, module in list(sys.modules.items())
        if module is not None and name.split(".")[0] in ("moto", "jsonpath_ng")
        for key, value in list(vars(module).items())
        if isinstance(value, types.FunctionType)
    }
    found.update({f"ExecutionWorker.{k}": v for k, v in vars(worker).items()})
    return found

before = functions()
with OfflineEngine(EngineConfig()) as engine:
    request = {"prompt": "lifecycle", "count": 2, "model": "stable-image-core"}
    result = engine.run(request)
    during = functions()
    clients = len(engine.moto_fixes.reused_clients())
after = functions()
print(json.dumps({
    "status": result.status,
    "clients": clients,
    "patched_while_running": sorted(k for k in before if during.get(k) is not before[k]),
    "changed_after_stop": sorted(k for k in before if after.get(k) is not before[k]),
    "engine_fixes_after_stop": engine.moto_fixes is not None,
}))
"""
    env = {k: v for k, v in os.environ.items() if k != moto_speedups.ENV_SWITCH}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "SUCCEEDED" and seen["clients"] >= 1
    assert "ExecutionWorker._get_evaluation_entrypoint" in seen["patched_while_running"]
    assert f"{boto_client.__name__}.boto_client_for" in seen["patched_while_running"]
    assert f"{json_path.__name__}.parse" in seen["patched_while_running"]
    assert seen["changed_after_stop"] == []
    assert seen["engine_fixes_after_stop"] is False


def test_a_second_set_is_refused_while_one_is_in(own_fixes: MotoFixes) -> None:
    with pytest.raises(RuntimeError, match="entered already"), MotoFixes():
        pass
    assert own_fixes.applied


def test_suspended_gives_moto_as_shipped_then_the_fixes_again(own_fixes: MotoFixes) -> None:
    with own_fixes.suspended():
        assert json_path.parse is jsonpath_ng.ext.parse
        assert not _marked(_functions())
    assert getattr(json_path.parse, MARK) and own_fixes.applied


# -- the moto they were written for ----------------------------------------------------------------


def test_the_version_checked_is_the_version_pinned() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [re.fullmatch(r"moto(\[[^]]*\])?==(\S+)", d) for d in dependencies]
    assert [m.group(2) for m in pins if m] == [moto_speedups.MOTO_VERSION]
    assert moto_speedups.installed_moto_version() == moto_speedups.MOTO_VERSION


def test_another_moto_version_is_refused_saying_what_to_do(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moto_speedups, "installed_moto_version", lambda: "5.3.0")
    with moto_as_shipped(engine):
        with pytest.raises(UnsupportedMoto) as refused, MotoFixes():
            pass
        assert not _marked(_functions())  # nothing was replaced
    message = str(refused.value)
    assert "moto 5.2.5" in message and "moto 5.3.0 is installed" in message
    assert "pyproject.toml" in message and "docs/decisions.md" in message
    assert "IMAGEGEN_MOTO_SPEEDUPS=0" in message and "EngineConfig(moto_speedups=False)" in message


def test_a_changed_layout_is_refused_and_nothing_is_replaced(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_as_shipped(engine):
        monkeypatch.setattr(result_path, "parse", lambda path: path)  # as if moto had changed
        with pytest.raises(UnsupportedMoto, match="IMAGEGEN_MOTO_SPEEDUPS=0"), MotoFixes():
            pass
        monkeypatch.undo()
        assert not _marked(_functions())


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)]
)
def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(moto_speedups.ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(moto_speedups.ENV_SWITCH, value)
    assert moto_speedups.enabled_by_environment() is on


# -- every module that binds what the fixes replace ---------------------------------------------


def _moto_files_mentioning(word: str) -> set[str]:
    """Modules of the whole moto package whose source mentions ``word`` (plain text, not the AST scan)."""
    root = Path(boto_client.__file__).parents[4]  # .../site-packages/moto
    found = set()
    for path in root.rglob("*.py"):
        if word in path.read_text(encoding="utf-8"):
            parts = path.relative_to(root.parent).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_that_imports_the_client_factory_is_found() -> None:
    found = {b.module for b in moto_speedups.client_factory_bindings()}
    assert _moto_files_mentioning("boto_client_for") == found | {boto_client.__name__}
    services = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_"
    # the four a hand-kept list of moto 5.2.5's users had missed
    assert {services + s for s in ("batch", "ecs", "glue", "unsupported")} <= found
    assert all(b.module_level for b in moto_speedups.client_factory_bindings())


def test_every_module_that_imports_a_jsonpath_parse_is_found() -> None:
    found = {b.module for b in moto_speedups.jsonpath_parse_bindings()}
    assert _moto_files_mentioning("jsonpath_ng") == found
    assert found == {json_path.__name__, result_path.__name__, "moto.events.utils"}


def test_no_loaded_module_keeps_moto_s_own_function_while_the_fixes_are_in(engine: Any) -> None:
    with moto_as_shipped(engine):
        originals = [boto_client.boto_client_for, jsonpath_ng.ext.parse, jsonpath_ng.parse]
        originals.append(execution_worker.ExecutionWorker.__dict__["_get_evaluation_entrypoint"])
        with MotoFixes():
            assert engine.run({"prompt": "nothing escapes", "count": 2, **SMALL}).status == "SUCCEEDED"
            keeping = [
                where
                for where, value in _functions().items()
                if any(value is original for original in originals)
                and not where[0].startswith("jsonpath_ng")  # where jsonpath-ng defines them
            ]
    assert keeping == []


# -- what each fix does ---------------------------------------------------------------------------


def test_a_path_is_parsed_once_and_gives_the_same_answers(fixes: MotoFixes) -> None:
    path = "$.speedups_test_only.items[1].seed"
    misses = fixes.path_parses()
    first = json_path.parse(path)
    second = json_path.parse(path)
    assert first is second
    assert fixes.path_parses() == misses + 1
    data = {"speedups_test_only": {"items": [{"seed": 1}, {"seed": 2}]}}
    assert [m.value for m in first.find(data)] == [
        m.value for m in jsonpath_ng.ext.parser.parse(path).find(data)
    ]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every real JSONPath parse by path text."""
    counted: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = jsonpath_ng.parser.JsonPathParser.parse

    def counting(self: Any, string: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            counted[string] += 1
        return original(self, string, *args, **kwargs)

    monkeypatch.setattr(jsonpath_ng.parser.JsonPathParser, "parse", counting)
    return counted


def test_two_executions_parse_each_distinct_path_once(
    engine: Any, own_fixes: MotoFixes, parses: collections.Counter[str]
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
    """The counter the test above relies on does see repeated parses when the fixes are off."""
    with moto_as_shipped(engine):
        assert engine.run({"prompt": "as shipped", "count": 3, **SMALL}).status == "SUCCEEDED"
    assert max(parses.values()) >= 3  # the Map's per-image paths, once per branch at least


def test_one_client_per_service_and_role_until_the_fixes_are_left(engine: Any) -> None:
    role = StateCredentials(role_arn="arn:aws:iam::123456789012:role/imagegen-offline")
    with moto_as_shipped(engine):
        with MotoFixes():
            first = lambda_eval_utils.boto_client_for(
                region="us-east-1", service="lambda", state_credentials=role
            )
            same_role = StateCredentials(role_arn=role.role_arn)
            same = lambda_eval_utils.boto_client_for(
                region="us-east-1", service="lambda", state_credentials=same_role
            )
            assert same is first
            other_role = StateCredentials(role_arn="arn:aws:iam::123456789012:role/other")
            for region, service, credentials, module in (
                ("us-east-1", "lambda", other_role, lambda_eval_utils),
                ("eu-west-1", "lambda", role, lambda_eval_utils),
                ("us-east-1", "events", role, state_task_service_events),
            ):
                made = module.boto_client_for(region=region, service=service, state_credentials=credentials)
                assert made is not first
        with MotoFixes():
            again = lambda_eval_utils.boto_client_for(
                region="us-east-1", service="lambda", state_credentials=role
            )
            assert again is not first  # a new set starts with no clients


def test_the_reused_lambda_client_routes_every_invoke(engine: Any, own_fixes: MotoFixes) -> None:
    before = dict(engine.router.invocations)
    for count in (2, 5):
        assert engine.run({"prompt": "routed", "count": count, **SMALL}).status == "SUCCEEDED"
    calls = {name: engine.router.invocations[name] - before[name] for name in before}
    assert calls["imagegen-generate-image"] == 7
    assert calls["imagegen-validate-request"] == calls["imagegen-build-manifest"] == 2
    services = [client.meta.service_model.service_name for client in own_fixes.reused_clients()]
    assert services.count("lambda") == 1  # nine Invokes, one client, each answered by the router


def _entrypoint_of(definition: str) -> Any:
    """What moto's ``ExecutionWorker`` evaluates for a state machine with this definition."""
    worker = SimpleNamespace(
        _evaluation_details=SimpleNamespace(state_machine_details=SimpleNamespace(definition=definition))
    )
    return execution_worker.ExecutionWorker._get_evaluation_entrypoint(worker)  # type: ignore[arg-type]


def test_a_definition_is_parsed_once_and_each_execution_gets_its_own_program(fixes: MotoFixes) -> None:
    definition = ASL.read_text()
    fixes.clear_caches()
    first, second = _entrypoint_of(definition), _entrypoint_of(definition)
    assert fixes.program_parses() == 1
    assert first is not second and type(first) is type(second)
    # a deep copy: no state object is shared between the two executions' programs
    first_states, second_states = first.states.states, second.states.states
    assert list(first_states) == list(second_states) and "GenerateImages" in first_states
    assert all(first_states[name] is not second_states[name] for name in first_states)


def test_a_definition_that_does_not_parse_raises_every_time(fixes: MotoFixes) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException

    fixes.clear_caches()
    for _ in range(2):
        with pytest.raises(ASLParserException):
            _entrypoint_of('{"StartAt": "Nowhere", "States": {')
    assert fixes.program_parses() == 0


def _history(engine: Any, request: dict[str, Any]) -> list[tuple[str, str | None]]:
    result = engine.run(request)
    assert result.status == "SUCCEEDED", result
    events = engine.sfn.get_execution_history(executionArn=result.arn, maxResults=1000)["events"]
    named = ("stateEnteredEventDetails", "stateExitedEventDetails")
    return [
        (event["type"], next((event[key]["name"] for key in named if key in event), None)) for event in events
    ]


def test_a_run_with_the_fixes_has_the_history_of_one_without(engine: Any) -> None:
    """The same request, with moto as shipped (the definition parsed for the execution) and with the fixes
    (a copy of the cached program): the same states entered and left, the same events, in the same order."""
    request = {"prompt": "same run", "count": 1, "seed": 7, **SMALL}
    with moto_as_shipped(engine):
        shipped = _history(engine, request)
        with MotoFixes() as fixes:
            fixed = _history(engine, request)
            assert fixes.program_parses() == 1
    assert fixed == shipped
    assert ("MapStateEntered", "GenerateImages") in shipped and shipped[-1][0] == "ExecutionSucceeded"

"""imagegen.moto_speedups: moto's interpreter parses each JSONPath once and reuses its clients, and
behaves as before (the whole workflow suite runs with them on)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonpath_ng
import jsonpath_ng.ext
import pytest
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

from imagegen import moto_speedups

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
    originals = (json_path.parse, result_path.parse, jsonpath_ng.ext.parse, lambda_eval_utils.boto_client_for)
    assert originals[0] is jsonpath_ng.ext.parse and originals[1] is jsonpath_ng.parse
    assert originals[3] is boto_client.boto_client_for
    try:
        assert moto_speedups.apply() and moto_speedups.apply()  # idempotent
        assert json_path.parse is not originals[0] and result_path.parse is not originals[1]
        assert jsonpath_ng.ext.parse is not originals[2]
        assert lambda_eval_utils.boto_client_for is not originals[3]
        moto_speedups.restore()
        assert (
            json_path.parse,
            result_path.parse,
            jsonpath_ng.ext.parse,
            lambda_eval_utils.boto_client_for,
        ) == originals
    finally:
        if was_applied:
            moto_speedups.apply()


def test_a_path_is_parsed_once_and_gives_the_same_answers(applied: None) -> None:
    before = json_path.parse.cache_info()  # type: ignore[attr-defined]
    path = "$.speedups_test_only.items[1].seed"
    first = json_path.parse(path)
    second = json_path.parse(path)
    after = json_path.parse.cache_info()  # type: ignore[attr-defined]
    assert first is second
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    data = {"speedups_test_only": {"items": [{"seed": 1}, {"seed": 2}]}}
    assert [m.value for m in first.find(data)] == [
        m.value for m in jsonpath_ng.ext.parser.parse(path).find(data)
    ]


def test_a_second_execution_parses_no_new_path(applied: None, engine: Any) -> None:
    request = {"prompt": "parse once", "count": 3, **SMALL}
    assert engine.run(request).status == "SUCCEEDED"
    misses = json_path.parse.cache_info().misses  # type: ignore[attr-defined]
    result = engine.run({**request, "count": 5})
    assert result.status == "SUCCEEDED" and result.output["succeeded"] == 5
    assert json_path.parse.cache_info().misses == misses  # type: ignore[attr-defined]


def test_one_client_per_service_until_the_engine_forgets_them(applied: None, engine: Any) -> None:
    first = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda")
    assert (
        lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=object())
        is first
    )
    assert lambda_eval_utils.boto_client_for(region="eu-west-1", service="lambda") is not first
    assert lambda_eval_utils.boto_client_for(region="us-east-1", service="events") is not first
    moto_speedups.forget_clients()
    assert lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda") is not first
    # The reused client still goes through the engine's Lambda router: the workflow runs.
    assert engine.run({"prompt": "routed", "count": 2, **SMALL}).status == "SUCCEEDED"


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

"""The batch's plain logic (names, lines, line records, totals) and the offline StartExecution adapter."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from image_pipeline.core.batch import (
    THRESHOLD_ERROR,
    BatchSettings,
    InvalidBatch,
    batch_id,
    batch_name,
    child_name,
    line_record,
    parse_lines,
    source_of,
    summarize,
)
from image_pipeline.core.tenancy import Caller, batch_caller

from imagegen.runtime.batch import adapt_start_execution


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("batches/run1.jsonl", "run1"),
        ("batches/2026/run 1.jsonl", "2026-run-1"),
        ("batches/é.jsonl", "batch"),
        ("batches/" + "x" * 60 + ".jsonl", "x" * 23 + "-"),
    ],
)
def test_batch_name_is_short_and_execution_name_safe(key: str, name: str) -> None:
    assert batch_name(key).startswith(name)
    assert len(batch_name(key)) <= 32
    assert all(c.isalnum() or c in "-_" for c in batch_name(key))


def test_child_names_depend_on_batch_line_and_request_only() -> None:
    request = {"prompt": "a", "count": 2}
    same = child_name("run", 3, {"count": 2, "prompt": "a"})
    assert child_name("run", 3, request) == same  # key order does not matter
    assert child_name("run", 4, request) != same
    assert child_name("other", 3, request) != same
    assert child_name("run", 3, {**request, "seed": 1}) != same
    assert len(child_name("x" * 32, 99_999, request)) <= 80
    assert batch_id("run", b"1") != batch_id("run", b"2")


#: The caller of the batches below: their upload folder's.
CALLER = batch_caller("batches/t.jsonl")


def test_a_batch_runs_as_the_system_caller_of_its_upload_folder() -> None:
    assert batch_caller("batches/run.jsonl") == Caller("system", "batch:batches/")
    assert batch_caller("batches/team-a/2026/run.jsonl") == Caller("system", "batch:batches/team-a/2026/")
    assert (
        batch_caller("batches/team-a/x.jsonl").namespace != batch_caller("batches/team-b/x.jsonl").namespace
    )


def test_parse_lines_numbers_lines_as_an_editor_does() -> None:
    text = '\ufeff{"prompt": "a"}\r\n\n  \nnot json\n[1]\n{"prompt": "b"}\n'
    items = parse_lines(text, name="t", max_lines=10, caller=CALLER)
    assert [i["line"] for i in items] == [1, 4, 5, 6]
    # Every child runs as the batch's caller (the workflow's envelope: request and caller).
    assert all(i["caller"] == {"kind": "system", "id": "batch:batches/"} for i in items)
    assert [i["error"] for i in items] == [None, "InvalidJsonLine", "InvalidJsonLine", None]
    assert items[0]["request"] == {"prompt": "a"} and items[0]["name"].startswith("t-00001-")
    assert "line 5: a request must be a JSON object" in items[2]["message"]


def test_parse_lines_limits() -> None:
    with pytest.raises(InvalidBatch, match="no request lines"):
        parse_lines("\n \n", name="t", max_lines=10, caller=CALLER)
    with pytest.raises(InvalidBatch, match="more than 2 request lines"):
        parse_lines("{}\n{}\n{}\n", name="t", max_lines=2, caller=CALLER)
    [item] = parse_lines(json.dumps({"prompt": "x" * 70_000}), name="t", max_lines=2, caller=CALLER)
    assert item["error"] == "InvalidJsonLine" and "longer than" in item["message"]


@pytest.mark.parametrize(
    "raw",
    [
        {"bucket": "b", "key": "batches/a.jsonl"},
        {"detail": {"bucket": {"name": "b"}, "object": {"key": "batches/a.jsonl"}}},
        {"bucket": {"name": "b"}, "object": {"key": "batches/a.jsonl"}},
    ],
)
def test_source_of_takes_the_rule_input_or_the_s3_event(raw: Any) -> None:
    source = source_of(raw)
    assert (source["bucket"], source["key"]) == ("b", "batches/a.jsonl")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "JSON object"),
        ({"bucket": "b"}, "bucket and key"),
        ({"bucket": "b", "key": "x.jsonl"}, "batches/"),
    ],
)
def test_source_of_rejects(raw: Any, message: str) -> None:
    with pytest.raises(InvalidBatch, match=message):
        source_of(raw)


def test_batch_settings_from_the_environment() -> None:
    settings = BatchSettings.from_environ(
        {"BATCH_MAX_CONCURRENCY": "4", "BATCH_TOLERATED_FAILURE_PERCENTAGE": "0"}
    )
    assert (settings.max_concurrency, settings.tolerated_failure_percentage) == (4, 0.0)
    with pytest.raises(RuntimeError, match="Invalid batch configuration"):
        BatchSettings.from_environ({"BATCH_TOLERATED_FAILURE_PERCENTAGE": "101"})


ITEM = {"line": 2, "name": "run-00002-abc", "request": {"prompt": "a"}, "error": None, "message": None}


def described(status: str, **extra: Any) -> dict[str, Any]:
    return {"executionArn": "arn:x", "status": status, **extra}


def test_line_record_of_each_outcome() -> None:
    output = {
        "status": "PARTIAL",
        "manifest_key": "m",
        "requested": 2,
        "succeeded": 1,
        "filtered": 1,
        "failed": 0,
    }
    ok = line_record(ITEM, described("SUCCEEDED", output=json.dumps(output)))
    assert (ok["status"], ok["manifest_key"], ok["succeeded"], ok["error"]) == ("PARTIAL", "m", 1, None)

    invalid = line_record(ITEM, described("FAILED", error="InvalidRequest", cause="Invalid request: prompt"))
    assert (invalid["status"], invalid["message"]) == ("INVALID", "Invalid request: prompt")

    cause = json.dumps({"errorType": "AllImagesFiltered", "errorMessage": "No image was generated"})
    filtered = line_record(
        ITEM,
        described("FAILED", error="AllImagesFiltered", cause=cause),
        stored_manifest={**output, "filtered": 2},
    )
    assert (filtered["status"], filtered["filtered"], filtered["message"]) == (
        "FILTERED",
        2,
        "No image was generated",
    )

    timed_out = line_record(ITEM, described("TIMED_OUT"))
    assert (timed_out["status"], timed_out["error"]) == ("FAILED", "ExecutionTimedOut")
    assert line_record(ITEM, None)["status"] == "NOT_RUN"
    assert line_record(ITEM, described("RUNNING"))["status"] == "RUNNING"
    bad = {**ITEM, "name": None, "error": "InvalidJsonLine", "message": "line 2: not valid JSON"}
    assert line_record(bad, None)["status"] == "INVALID"


def records(*statuses: str) -> list[dict[str, Any]]:
    return [
        {"status": s, "requested": 1, "succeeded": int(s == "SUCCEEDED"), "filtered": 0, "failed": 0}
        for s in statuses
    ]


def test_summarize_applies_the_distributed_maps_rule() -> None:
    at = summarize(records("SUCCEEDED", "FAILED"), tolerated_failure_percentage=50, map_error=None)
    assert (at["status"], at["error"], at["failure_percentage"]) == ("PARTIAL", None, 50.0)
    over = summarize(
        records("SUCCEEDED", "FAILED", "INVALID"), tolerated_failure_percentage=50, map_error=None
    )
    assert (over["status"], over["error"]) == ("FAILED", THRESHOLD_ERROR)
    assert (
        summarize(records("SUCCEEDED"), tolerated_failure_percentage=0, map_error=None)["status"]
        == "SUCCEEDED"
    )
    none = summarize(records("FAILED"), tolerated_failure_percentage=100, map_error=None)
    assert (none["status"], none["error"]) == ("FAILED", None)  # tolerated, but no line produced an image
    not_run = summarize(records("SUCCEEDED", "NOT_RUN"), tolerated_failure_percentage=0, map_error=None)
    assert (not_run["status"], not_run["failed_lines"]) == ("PARTIAL", 0)


def test_summarize_reports_the_maps_error() -> None:
    error = {
        "Error": "States.ExceedToleratedFailureThreshold",
        "Cause": "The specified tolerated failure threshold was exceeded",
    }
    summary = summarize(
        records("SUCCEEDED", "FAILED", "NOT_RUN"), tolerated_failure_percentage=10, map_error=error
    )
    assert summary["error"] == THRESHOLD_ERROR
    assert summary["cause"].startswith("States.ExceedToleratedFailureThreshold: The specified")
    other = summarize(
        records("NOT_RUN"), tolerated_failure_percentage=10, map_error={"Error": "States.ItemReaderFailed"}
    )
    assert (other["error"], other["cause"]) == ("BatchFailed", "States.ItemReaderFailed")


def test_start_execution_adapter_renames_only_the_integrations_names() -> None:
    session = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", aws_session_token="x", region_name="us-east-1"
    )
    adapt_start_execution(session)
    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(params["body"]))
        raise _Stop

    session.events.register("before-call.sfn.StartExecution", capture)
    client = session.client("stepfunctions", config=Config(parameter_validation=False))
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
    for kwargs in (
        {"StateMachineArn": arn, "Name": "n", "Input": "{}"},
        {"stateMachineArn": arn, "name": "n"},
    ):
        with pytest.raises(_Stop):
            client.start_execution(**kwargs)
    assert sent == [
        {"stateMachineArn": arn, "name": "n", "input": "{}"},
        {"stateMachineArn": arn, "name": "n"},
    ]


class _Stop(Exception):
    """Ends a call before it is sent."""

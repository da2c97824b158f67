"""The batch workflow (``statemachine/batch_generate.asl.json``) offline: a JSONL file in the bucket,
a Distributed Map of child executions of the per-request workflow, and the batch manifest."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from image_pipeline.core.batch import THRESHOLD_ERROR
from image_pipeline.core.tenancy import batch_caller

from imagegen.runtime.batch import BatchRun
from imagegen.standin.bedrock_server import FaultPlan


def child_executions(engine: Any, prefix: str) -> list[dict[str, Any]]:
    executions = engine.sfn.list_executions(stateMachineArn=engine.state_machines["jobs"])["executions"]
    return [e for e in executions if e["name"].startswith(prefix)]


def stored_manifest(engine: Any, run: BatchRun) -> dict[str, Any]:
    assert run.manifest is not None, run.result.message
    body = engine.s3.get_object(Bucket=engine.config.bucket, Key=run.manifest["manifest_key"])["Body"]
    return dict(json.loads(body.read()))


FIVE_LINES: list[Any] = [
    {"prompt": "a red porsche", "count": 2, "seed": 700},
    {"prompt": "a blue porsche", "count": 99},  # invalid: more than 40 images
    {"prompt": "a forbidden lighthouse", "count": 2, "model": "stable-image-ultra"},  # every image filtered
    {"prompt": "a green porsche", "count": 3, "seed": 710, "output_folder": "batch/partial"},
    {"prompt": "a yellow porsche", "count": 1, "seed": 720, "file_name_prefix": "yellow"},
]


def test_the_batch_manifest_reports_every_line(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(block_prompt_terms=["forbidden"], block_output_seeds={711})
    run = engine.run_batch(FIVE_LINES, key="batches/report.jsonl", tolerated_failure_percentage=50)

    assert run.result.status == "SUCCEEDED", run.result.message
    summary = run.result.output
    manifest = stored_manifest(engine, run)
    assert {k: v for k, v in manifest.items() if k != "items"} == summary
    assert summary["status"] == "PARTIAL" and summary["error"] is None
    assert summary["lines"] == 5 and summary["failed_lines"] == 2 and summary["failure_percentage"] == 40.0
    assert summary["line_statuses"] == {
        "SUCCEEDED": 2,
        "PARTIAL": 1,
        "FILTERED": 1,
        "INVALID": 1,
        "FAILED": 0,
        "NOT_RUN": 0,
        "RUNNING": 0,
    }
    assert summary["images"] == {"requested": 8, "succeeded": 5, "filtered": 3, "failed": 0}

    lines = {i["line"]: i for i in manifest["items"]}
    assert [lines[n]["status"] for n in range(1, 6)] == [
        "SUCCEEDED",
        "INVALID",
        "FILTERED",
        "PARTIAL",
        "SUCCEEDED",
    ]
    invalid = lines[2]
    assert invalid["error"] == "InvalidRequest" and "count" in invalid["message"]
    assert invalid["manifest_key"] is None and invalid["request_id"].startswith("report-00002-")
    filtered = lines[3]
    assert filtered["error"] == "AllImagesFiltered"
    assert (filtered["requested"], filtered["succeeded"], filtered["filtered"]) == (2, 0, 2)
    partial = lines[4]
    # Under the namespace of the batch's caller (its upload folder's system caller).
    namespace = batch_caller("batches/report.jsonl").namespace
    assert manifest["caller_namespace"] == namespace
    assert partial["manifest_key"] == f"{namespace}/batch/partial/{partial['request_id']}/manifest.json"
    assert (partial["succeeded"], partial["filtered"]) == (2, 1)
    for record in manifest["items"]:
        assert record["request_id"] == f"report-{record['line']:05d}-{record['request_id'][-10:]}"
        if record["manifest_key"]:  # every reported request manifest is in the bucket
            engine.s3.head_object(Bucket=engine.config.bucket, Key=record["manifest_key"])
    yellow = json.loads(
        engine.s3.get_object(Bucket=engine.config.bucket, Key=lines[5]["manifest_key"])["Body"].read()
    )
    assert yellow["images"][0]["key"].endswith("/yellow-00-720.png")
    assert manifest["manifest_key"].startswith("batch-results/report-")
    assert manifest["source_key"] == "batches/report.jsonl"


def test_lines_that_are_not_json_objects_get_no_child(engine: Any) -> None:
    lines: list[Any] = ["not json at all", "", "[1, 2]", {"prompt": "a fox", "count": 1}]
    run = engine.run_batch(lines, key="batches/not-json.jsonl", tolerated_failure_percentage=100)

    assert run.result.status == "SUCCEEDED", run.result.message
    assert run.manifest is not None
    records = {i["line"]: i for i in run.manifest["items"]}
    assert sorted(records) == [1, 3, 4]  # the blank line 2 is skipped, numbering kept
    for number in (1, 3):
        assert records[number]["status"] == "INVALID" and records[number]["error"] == "InvalidJsonLine"
        assert records[number]["request_id"] is None and f"line {number}" in records[number]["message"]
    assert records[4]["status"] == "SUCCEEDED"
    assert len(child_executions(engine, "not-json-")) == 1


def test_exceeding_the_tolerated_failures_fails_the_batch_after_the_manifest(engine: Any) -> None:
    lines = [{"prompt": "a kite", "count": 1}, {"prompt": "", "count": 1}, {"prompt": "a boat", "count": 1}]
    run = engine.run_batch(lines, key="batches/threshold.jsonl", tolerated_failure_percentage=20)

    assert run.result.status == "FAILED"
    assert run.result.error == THRESHOLD_ERROR
    assert "1 of 3 lines failed (33.3%), more than the tolerated 20%" in run.result.message
    manifest = stored_manifest(engine, run)
    assert manifest["status"] == "FAILED" and manifest["error"] == THRESHOLD_ERROR
    assert [i["status"] for i in manifest["items"]] == ["SUCCEEDED", "INVALID", "SUCCEEDED"]


def test_exactly_the_tolerated_share_does_not_fail(engine: Any) -> None:
    lines = [{"prompt": "a kite", "count": 1}, {"prompt": "x", "count": 0}]
    run = engine.run_batch(lines, key="batches/at-threshold.jsonl", tolerated_failure_percentage=50)
    assert run.result.status == "SUCCEEDED", run.result.message
    assert run.result.output["status"] == "PARTIAL" and run.result.output["failure_percentage"] == 50.0


def test_running_the_same_file_again_does_not_generate_again(engine: Any) -> None:
    lines = [{"prompt": "an owl", "count": 2, "seed": 5}, {"prompt": "a cat", "count": 1, "seed": 6}]
    first = engine.run_batch(lines, key="batches/rerun.jsonl")
    assert first.result.status == "SUCCEEDED", first.result.message
    calls = engine.bedrock.invocations
    children = child_executions(engine, "rerun-")
    assert len(children) == 2

    second = engine.run_batch(lines, key="batches/rerun.jsonl")

    assert second.result.status == "SUCCEEDED", second.result.message
    assert engine.bedrock.invocations == calls  # no model call
    assert child_executions(engine, "rerun-") == children  # no new child execution
    assert first.manifest is not None and second.manifest is not None
    assert second.manifest["items"] == first.manifest["items"]
    assert second.manifest["manifest_key"] == first.manifest["manifest_key"]


def test_a_changed_line_runs_again_and_the_others_do_not(engine: Any) -> None:
    lines: list[Any] = [
        {"prompt": "a heron", "count": 1, "seed": 1},
        {"prompt": "a crane", "count": 1, "seed": 2},
    ]
    engine.run_batch(lines, key="batches/edit.jsonl")
    calls = engine.bedrock.invocations

    lines[1] = {"prompt": "a stork", "count": 1, "seed": 2}
    run = engine.run_batch(lines, key="batches/edit.jsonl")

    assert run.result.status == "SUCCEEDED", run.result.message
    assert engine.bedrock.invocations == calls + 1
    assert len(child_executions(engine, "edit-")) == 3
    assert run.manifest is not None and [i["status"] for i in run.manifest["items"]] == ["SUCCEEDED"] * 2


def test_a_rerun_of_a_failed_line_fails_the_same_way(engine: Any) -> None:
    lines = [
        {"prompt": "a forbidden gate", "count": 1, "model": "stable-image-ultra"},
        {"prompt": "a gate", "count": 1},
    ]
    engine.bedrock.faults = FaultPlan(block_prompt_terms=["forbidden"])
    first = engine.run_batch(lines, key="batches/refail.jsonl", tolerated_failure_percentage=0)
    engine.bedrock.faults = FaultPlan()
    second = engine.run_batch(lines, key="batches/refail.jsonl", tolerated_failure_percentage=0)

    assert first.result.error == second.result.error == THRESHOLD_ERROR
    assert second.manifest is not None and second.line(1)["status"] == "FILTERED"


def test_max_concurrency_runs_the_children_one_at_a_time(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(latency_seconds=0.2)
    lines = [{"prompt": f"a tree {i}", "count": 1} for i in range(3)]
    run = engine.run_batch(lines, key="batches/serial.jsonl", max_concurrency=1)

    assert run.result.status == "SUCCEEDED", run.result.message
    spans = sorted(
        (d["startDate"], d["stopDate"])
        for d in (
            engine.sfn.describe_execution(executionArn=e["executionArn"])
            for e in child_executions(engine, "serial-")
        )
    )
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_the_batch_takes_an_s3_object_created_event(engine: Any) -> None:
    """The rule passes {"bucket", "key"}; a whole S3 "Object Created" event works as well."""
    key = "batches/from-event.jsonl"
    engine.s3.put_object(Bucket=engine.config.bucket, Key=key, Body=b'{"prompt": "a bee", "count": 1}\n')
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": engine.config.bucket}, "object": {"key": key}},
    }
    result = engine.wait(engine.start_execution(event, kind="batch"))
    assert result.status == "SUCCEEDED", result.message
    assert result.output["line_statuses"]["SUCCEEDED"] == 1


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        (b"\n\n", "batches/empty.jsonl", "no request lines"),
        (b'{"prompt": "a"}\n', "elsewhere/file.jsonl", "batches/"),
        (b"\xff\xfe", "batches/binary.jsonl", "not UTF-8"),
    ],
)
def test_a_file_that_cannot_be_a_batch_fails_with_invalid_batch(
    engine: Any, body: bytes, key: str, message: str
) -> None:
    engine.s3.put_object(Bucket=engine.config.bucket, Key=key, Body=body)
    result = engine.wait(engine.start_execution({"bucket": engine.config.bucket, "key": key}, kind="batch"))
    assert result.status == "FAILED" and result.error == "InvalidBatch"
    assert message in result.message


def test_concurrency_above_the_deployment_cap_is_refused(engine: Any) -> None:
    run = engine.run_batch([{"prompt": "a"}], key="batches/too-wide.jsonl", max_concurrency=10_000)
    assert run.result.error == "InvalidBatch" and "max_concurrency" in run.result.message
    assert run.manifest is None

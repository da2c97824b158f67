"""The images of a running job, read from its execution history (``core/job_history.py``)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from image_pipeline.core.job_history import images_from_history, read_history, signed_images

KEY = "9c8ec090db4f/images/job-1/image-{:02d}-{}.png"


def exited(kind: str, name: str, output: Any) -> dict[str, Any]:
    text = output if isinstance(output, str) else json.dumps(output)
    return {"type": kind, "stateExitedEventDetails": {"name": name, "output": text}}


def stored(index: int, seed: int) -> dict[str, Any]:
    return exited(
        "TaskStateExited",
        "GenerateImage",
        {
            "index": index,
            "seed": seed,
            "key": KEY.format(index, seed),
            "status": "SUCCEEDED",
            "width": 1024,
            "height": 1024,
            "model_id": "stability.stable-image-core-v1:1",
            "model_latency_ms": 900,
        },
    )


#: A 4-image job's history as Step Functions (and moto) records it: image 2 stored first, image 0 filtered,
#: image 3 failed (its caught error's TaskStateExited carries the branch input, then RecordImageFailure's
#: record), image 1 still running.
HISTORY: list[dict[str, Any]] = [
    {"type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}},
    exited("TaskStateExited", "ValidateRequest", {"request_id": "job-1", "images": []}),
    {"type": "MapStateStarted", "mapStateStartedEventDetails": {"length": 4}},
    {
        "type": "MapIterationStarted",
        "mapIterationStartedEventDetails": {"name": "GenerateImages", "index": 0},
    },
    stored(2, 45),
    {
        "type": "MapIterationSucceeded",
        "mapIterationSucceededEventDetails": {"name": "GenerateImages", "index": 2},
    },
    exited(
        "TaskStateExited",
        "GenerateImage",
        {"index": 0, "seed": 43, "key": None, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"},
    ),
    exited("TaskStateExited", "GenerateImage", {"image": {"index": 3}, "error": {"Error": "ModelThrottled"}}),
    exited(
        "PassStateExited",
        "RecordImageFailure",
        {
            "index": 3,
            "seed": 46,
            "key": KEY.format(3, 46),
            "status": "FAILED",
            "error": "ModelThrottled",
            "cause": "{}",
        },
    ),
]


def test_images_come_in_the_order_they_ended_with_the_manifests_words() -> None:
    images = images_from_history(HISTORY)
    assert [(i["index"], i["status"], i["reason_code"]) for i in images] == [
        (2, "SUCCEEDED", None),
        (0, "FILTERED", "CONTENT_FILTERED_OUTPUT"),
        (3, "FAILED", "THROTTLED"),
    ]
    assert images[0] == {
        "index": 2,
        "seed": 45,
        "status": "SUCCEEDED",
        "reason_code": None,
        "key": KEY.format(2, 45),
        "width": 1024,
        "height": 1024,
    }
    assert images[2]["key"] is None  # planned, never stored


def test_the_order_is_stable_as_the_history_grows() -> None:
    before = images_from_history(HISTORY)
    after = images_from_history([*HISTORY, stored(1, 44), stored(2, 45)])  # an index met twice: first kept
    assert after[: len(before)] == before
    assert [i["index"] for i in after] == [2, 0, 3, 1]


def test_a_cancelled_branch_is_failed_with_reason_cancelled() -> None:
    record = {"index": 1, "seed": 44, "key": None, "status": "CANCELLED", "reason_code": "CANCELLED"}
    (image,) = images_from_history([exited("TaskStateExited", "GenerateImage", record)])
    assert (image["status"], image["reason_code"], image["key"]) == ("FAILED", "CANCELLED", None)


@pytest.mark.parametrize(
    "event",
    [
        exited("TaskStateExited", "BuildManifest", {"status": "SUCCEEDED", "images": []}),
        exited("TaskStateExited", "GenerateImage", "not json"),
        exited("TaskStateExited", "GenerateImage", {"index": "1", "status": "SUCCEEDED"}),
        exited("TaskStateExited", "GenerateImage", {"index": True, "status": "SUCCEEDED"}),
        exited("TaskStateExited", "GenerateImage", {"index": 1, "status": "RUNNING"}),
        {"type": "TaskSucceeded", "taskSucceededEventDetails": {"output": json.dumps({"index": 1})}},
    ],
)
def test_events_that_are_not_an_images_record_are_skipped(event: dict[str, Any]) -> None:
    assert images_from_history([event]) == []


def test_read_history_follows_pages_up_to_the_limit() -> None:
    class Sfn:
        calls: list[dict[str, Any]] = []

        def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return {"events": [stored(len(self.calls), 1)], "nextToken": f"t{len(self.calls)}"}

    sfn = Sfn()
    assert len(read_history(sfn, "arn", max_pages=3)) == 3
    assert [c.get("nextToken") for c in sfn.calls] == [None, "t1", "t2"]


def test_only_the_callers_own_keys_are_signed(aws_credentials: None) -> None:
    s3 = boto3.client("s3", region_name="us-west-2")
    images = images_from_history(HISTORY)
    foreign = {**images[0], "key": "000000000000/images/job-1/image-02-45.png"}
    signed = signed_images(
        [images[0], foreign, images[1]], s3=s3, bucket="b", namespace="9c8ec090db4f", expires_in=60
    )
    assert "image-02-45.png" in signed[0]["url"] and "attachment" in signed[0]["download_url"]
    assert signed[1]["key"] is None and "url" not in signed[1]
    assert "url" not in signed[2]

"""The plain parts of ``core/job_control.py``: RFC 7240 ``Prefer``, the poll schedule and the wait,
``GET /jobs``' parameters and tokens, a retry's body. (The routes themselves: test_http_api_jobs.py.)"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from image_pipeline.core import time_budget
from image_pipeline.core.job_control import (
    MAX_LIST_LIMIT,
    WaitPreference,
    decode_token,
    encode_token,
    list_query,
    poll_delays,
    retry_body,
    settled_values,
    wait_for_execution,
    wait_preference,
)
from image_pipeline.core.jobs import ApiError


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], WaitPreference(25.0)),
        (["wait=5"], WaitPreference(5.0, "wait=5")),
        (["Wait=5"], WaitPreference(5.0, "wait=5")),  # preference names are case-insensitive
        (['wait="7"'], WaitPreference(7.0, "wait=7")),
        (["wait=600"], WaitPreference(25.0, "wait=25")),  # capped, and the cap is what was applied
        (["wait=0"], WaitPreference(0.0, "wait=0")),
        (["respond-async"], WaitPreference(0.0, "respond-async")),
        (["respond-async, wait=3"], WaitPreference(3.0, "wait=3")),
        (["respond-async", "wait=3"], WaitPreference(3.0, "wait=3")),  # two Prefer headers
        (["handling=lenient; x=1, wait=2"], WaitPreference(2.0, "wait=2")),
        (["wait=soon"], WaitPreference(25.0)),  # not understood: ignored (RFC 7240 section 2)
        (["wait=-1"], WaitPreference(25.0)),
        (["return=minimal"], WaitPreference(25.0)),
    ],
)
def test_prefer_wait_is_honoured_up_to_the_longest_wait(headers: list[str], expected: WaitPreference) -> None:
    assert wait_preference(headers, 25.0) == expected


def test_the_longest_wait_is_what_the_function_has_left_less_its_margin() -> None:
    margin = time_budget.sync_wait_margin()
    assert margin == time_budget.STEPFUNCTIONS_POLL.worst_case_seconds + time_budget.SYNC_ANSWER_SECONDS
    assert time_budget.longest_sync_wait(29) == 29 - margin
    assert time_budget.longest_sync_wait(1) == 0.0
    assert time_budget.sync_wait_bound(time_budget.longest_sync_wait(29)) == 29


def test_polls_back_off_to_one_second() -> None:
    delays = list(itertools.islice(poll_delays(), 9))
    assert delays[:4] == pytest.approx([0.1, 0.15, 0.225, 0.3375])
    assert delays[-1] == 1.0 and delays == sorted(delays)
    # Over a 25-second wait, about 30 DescribeExecution calls.
    total, polls = 0.0, 0
    for delay in poll_delays():
        if total >= 25:
            break
        total, polls = total + delay, polls + 1
    assert 25 <= polls <= 35


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Sfn:
    """Answers DescribeExecution from a script: one answer (or exception) per call, the last repeated."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


RUNNING = {"status": "RUNNING"}
DONE = {"status": "SUCCEEDED", "output": "{}"}


def test_the_wait_ends_when_the_execution_does() -> None:
    clock = Clock()
    sfn = Sfn(RUNNING, RUNNING, RUNNING, DONE)
    assert wait_for_execution(sfn, "arn", 10, clock=clock, sleep=clock.sleep) == DONE
    assert sfn.calls == 4 and clock.sleeps == pytest.approx([0.1, 0.15, 0.225])


def test_the_wait_gives_up_at_its_deadline_with_a_last_look() -> None:
    clock = Clock()
    sfn = Sfn(RUNNING)
    assert wait_for_execution(sfn, "arn", 1.0, clock=clock, sleep=clock.sleep) is None
    assert clock.now == pytest.approx(1.0) and sum(clock.sleeps) == pytest.approx(1.0)
    assert wait_for_execution(Sfn(RUNNING), "arn", 0.0, clock=Clock(), sleep=Clock().sleep) is None


def test_a_failed_poll_is_made_again_and_an_unsettled_end_awaited() -> None:
    clock = Clock()
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Describe")
    # moto sets an execution's status a moment before its output: the wait reads again.
    sfn = Sfn(throttled, {"status": "SUCCEEDED"}, DONE)
    assert wait_for_execution(sfn, "arn", 10, clock=clock, sleep=clock.sleep) == DONE
    assert sfn.calls == 3


KEY = {
    "pk": "JOB#ns#job-1",
    "sk": "JOB",
    "caller_jobs": "CALLER#ns",
    "started": "2026-11-30T10:00:00.000Z#job-1",
}


def test_tokens_are_opaque_and_bound_to_their_status() -> None:
    token = encode_token({"key": {**KEY, "pk": "JOB#ns#a+/=?"}, "status": "failed"})
    assert "=" not in token and "/" not in token and "+" not in token
    assert decode_token(token, "failed") == {"v": 2, "key": {**KEY, "pk": "JOB#ns#a+/=?"}, "status": "failed"}
    with pytest.raises(ValueError, match="issued for status=failed"):
        decode_token(token, None)
    for bad in (
        "xyz",
        "e30",  # {}
        encode_token({"key": {**KEY, "sk": 3}, "status": None}),  # not text
        encode_token({"key": {**KEY, "extra": "x"}, "status": None}),  # not an index key
        encode_token({"key": "JOB#ns", "status": None}),
        encode_token({"sfn": "AAA", "after": None, "status": None}),  # the ListExecutions cursor of before
    ):
        with pytest.raises(ValueError, match="not a token"):
            decode_token(bad, None)


def test_list_parameters() -> None:
    assert list_query([]) == (None, 20, None)
    assert list_query([("status", "cancelled"), ("limit", str(MAX_LIST_LIMIT))]) == ("cancelled", 100, None)
    token = encode_token({"key": KEY, "status": "running"})
    assert list_query([("status", "running"), ("next_token", token)])[2] == {
        "v": 2,
        "key": KEY,
        "status": "running",
    }
    with pytest.raises(ApiError) as raised:
        list_query([("limit", "5"), ("limit", "6"), ("status", "nope")])
    assert {d.field for d in raised.value.details} == {"limit", "status"}


def test_a_job_the_index_calls_running_is_settled_from_its_execution() -> None:
    """What the list writes back for a job whose execution ended without its last step's write: the
    manifest's outcome, or FAILED with the error for a failed, timed-out or aborted execution."""
    stopped = datetime(2026, 11, 30, 10, 5, 7, tzinfo=UTC)
    assert settled_values({"status": "RUNNING"}) is None
    images = [{"index": 1, "status": "SUCCEEDED", "key": "k/1.png"}, {"index": 0, "status": "FAILED"}]
    manifest = {"status": "PARTIAL", "succeeded": 1, "filtered": 0, "failed": 1, "images": images}
    done = settled_values({"status": "SUCCEEDED", "output": json.dumps(manifest), "stopDate": stopped})
    assert done is not None
    assert (done["status"], done["thumbnail_key"], done["stopped_at"]) == (
        "PARTIAL",
        "k/1.png",
        "2026-11-30T10:05:07+00:00",
    )
    cancelled = settled_values({"status": "SUCCEEDED", "output": json.dumps({**manifest, "cancelled": True})})
    assert cancelled is not None and cancelled["status"] == "CANCELLED"
    for described, error, words in (
        (
            {"status": "FAILED", "error": "StorageError", "cause": '{"errorMessage": "S3 down"}'},
            "StorageError",
            "S3 down",
        ),
        ({"status": "TIMED_OUT"}, "ExecutionTimedOut", "did not finish in time"),
        ({"status": "ABORTED"}, "ExecutionAborted", "was stopped"),
    ):
        failed = settled_values({**described, "stopDate": stopped})
        assert failed is not None and (failed["status"], failed["error"]) == ("FAILED", error)
        assert words in failed["error_message"] and failed["stopped_at"] == "2026-11-30T10:05:07+00:00"
        assert "thumbnail_key" not in failed


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, False), ({}, False), ({"include_filtered": True}, True)]
)
def test_a_retry_body(raw: Any, expected: bool) -> None:
    assert retry_body(raw) is expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [([], "body"), ({"include_filtered": 1}, "include_filtered"), ({"images": [1]}, "images")],
)
def test_a_bad_retry_body_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(ApiError) as raised:
        retry_body(raw)
    assert raised.value.status == 400 and raised.value.details[0].field == field

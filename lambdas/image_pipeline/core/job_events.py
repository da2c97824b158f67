"""``GET /jobs/{id}/events``: a job's progress as Server-Sent Events (``text/event-stream``).

A job's events are one sequence that only grows: one ``image`` event per image, in the order the
images were stored (or filtered, or failed: ``core/job_history.py``), then one end event, ``completed``
(the job succeeded), ``cancelled`` or ``failed``, whose data is the job document of ``GET /jobs/{id}``
(the manifest with fresh links, or the error). Event ``n`` of the sequence has the id ``n`` (1, 2, ...),
so ``Last-Event-ID: n`` (or ``?last_event_id=n``) resumes after it; a client that has the end event
gets ``204``, which tells an EventSource to stop reconnecting.

:func:`job_events` reads the events after a given id from one DescribeExecution and the execution
history (the same calls as ``GET /jobs/{id}``). The deployed API answers each request with one batch
(:func:`event_batch`: what is there now, and ``retry:`` so the client comes back), which fits API
Gateway's buffered, 29 s Lambda proxy integration; the local server keeps the stream open and polls
(``imagegen/runtime/local_events.py``). Why: ``docs/decisions.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from image_pipeline.contract.errors import FieldError
from image_pipeline.core.job_history import images_from_history, read_history, signed_images
from image_pipeline.core.jobs import (
    ApiError,
    describe_own_execution,
    job_from_execution,
    progress_from_history,
)
from image_pipeline.core.tenancy import Caller

EVENT_STREAM = "text/event-stream"
LAST_EVENT_ID_HEADER = "Last-Event-ID"
#: How long a client waits before it asks again, after a batch (deployed) or a lost connection.
RETRY_MILLISECONDS = 2000
#: Job status -> the name of the event that ends its stream.
END_EVENTS = {"succeeded": "completed", "cancelled": "cancelled", "failed": "failed"}
#: The response headers of an events answer (no proxy may cache or hold it back).
EVENT_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: its id (position in the sequence), name and JSON data."""

    id: int
    event: str
    data: dict[str, Any]

    def text(self) -> str:
        """The event in the ``text/event-stream`` format (the data is one line of JSON)."""
        return f"id: {self.id}\nevent: {self.event}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass(frozen=True)
class EventsRead:
    """The events after ``after``, and whether the job has ended (they then include its end event)."""

    events: list[JobEvent]
    ended: bool
    images_seen: int

    @property
    def nothing_left(self) -> bool:
        """The job has ended and the client has had every event (answered ``204``)."""
        return self.ended and not self.events


def last_event_id(header: str | None, query: str | None = None) -> int:
    """The id of the last event a client has (``Last-Event-ID``, else ``?last_event_id=``; none: 0);
    a 400 naming the field when it is not an id of ours (a whole number)."""
    field, value = (LAST_EVENT_ID_HEADER, header) if header is not None else ("last_event_id", query)
    if value is None or not value.strip():
        return 0
    text = value.strip()
    if not text.isdigit() or len(text) > 6:
        raise ApiError.invalid(
            [FieldError(field, f"{text[:20]!r} is not an event id: send the last id received")]
        )
    return int(text)


def job_events(
    sfn: Any,
    state_machine_arn: str,
    job_id: str,
    *,
    caller: Caller,
    s3: Any,
    bucket: str,
    expires_in: int,
    after: int = 0,
) -> EventsRead:
    """The events of ``caller``'s job ``job_id`` after event ``after``: 404 ``JobNotFound`` when the
    caller has no such job. The execution is described before its history is read, so an ended job's
    history holds every image before its end event is added."""
    described = describe_own_execution(sfn, state_machine_arn, caller, job_id)
    ended = described["status"] != "RUNNING"
    history = read_history(sfn, str(described["executionArn"]))
    images = images_from_history(history)
    progress = progress_from_history(history)
    new = signed_images(
        images[after:], s3=s3, bucket=bucket, namespace=caller.namespace, expires_in=expires_in
    )
    events = [
        JobEvent(after + position + 1, "image", {**image, "progress": progress})
        for position, image in enumerate(new)
    ]
    if ended and after <= len(images):
        job = job_from_execution(described, s3=s3, expires_in=expires_in, job_id=job_id)
        events.append(JobEvent(len(images) + 1, END_EVENTS.get(job["status"], "failed"), job))
    return EventsRead(events, ended, len(images))


def event_batch(events: Iterable[JobEvent], *, retry_ms: int = RETRY_MILLISECONDS) -> str:
    """One answer of the deployed route: ``retry:`` (when the client asks again), then the events."""
    return f"retry: {retry_ms}\n\n" + "".join(event.text() for event in events)

"""``GET /jobs/{id}/events`` on the local server: the job's Server-Sent Events as one open stream.

The events are the deployed route's (:mod:`image_pipeline.core.job_events`, read from the same
DescribeExecution and execution history); where the deployed API answers one batch per request
(API Gateway buffers a Lambda proxy answer), this keeps the response open and reads the job again every
:data:`POLL_SECONDS` until its end event, so an image is sent about as soon as it is stored. A client
that reconnects with ``Last-Event-ID`` resumes after it; one that has the end event gets ``204``.
Image links are this server's signed ``/files`` links, like every other answer of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from image_pipeline.core.job_events import (
    EVENT_HEADERS,
    EVENT_STREAM,
    LAST_EVENT_ID_HEADER,
    RETRY_MILLISECONDS,
    EventsRead,
    JobEvent,
    job_events,
    last_event_id,
)
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller

from imagegen.runtime.engine import OfflineEngine

#: How often an open stream reads its job again (two cheap calls to moto).
POLL_SECONDS = 0.25
#: A comment line this often keeps idle connections (and proxies) open.
KEEPALIVE_SECONDS = 15.0


def add_event_routes(
    app: FastAPI,
    *,
    engine: OfflineEngine,
    settings: Settings,
    caller_of: Callable[[Request], Caller],
    blocking: Callable[..., Awaitable[Any]],
    local_urls: Callable[[dict[str, Any], str], dict[str, Any]],
) -> None:
    """Add ``GET /jobs/{job_id}/events`` to ``app`` (the local API of ``create_app``)."""

    def read(caller: Caller, job_id: str, after: int, base_url: str) -> EventsRead:
        found = job_events(
            engine.sfn,
            engine.state_machines["jobs"],
            job_id,
            caller=caller,
            s3=engine.s3,
            bucket=engine.config.bucket,
            expires_in=settings.presign_expiry_seconds,
            after=after,
        )
        return EventsRead(
            [_local(e, base_url, local_urls) for e in found.events], found.ended, found.images_seen
        )

    @app.get(
        "/jobs/{job_id}/events",
        summary="The job's images as they are stored, then its end (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {EVENT_STREAM: {}}}, 204: {"description": "The client has every event"}},
    )
    async def get_job_events(job_id: str, request: Request) -> Response:
        caller = caller_of(request)
        after = last_event_id(
            request.headers.get(LAST_EVENT_ID_HEADER), request.query_params.get("last_event_id")
        )
        base_url = str(request.base_url)
        first: EventsRead = await blocking(read, caller, job_id, after, base_url)  # 404/400 before the stream
        if first.nothing_left:
            return Response(status_code=204, headers=EVENT_HEADERS)

        async def stream() -> AsyncIterator[str]:
            yield f"retry: {RETRY_MILLISECONDS}\n\n"
            current, sent = first, after
            quiet = 0.0
            while True:
                for event in current.events:
                    yield event.text()
                    sent = max(sent, event.id)
                if current.ended or await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)
                quiet = 0.0 if current.events else quiet + POLL_SECONDS
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                current = await blocking(read, caller, job_id, sent, base_url)

        return StreamingResponse(stream(), media_type=EVENT_STREAM, headers=EVENT_HEADERS)


def _local(
    event: JobEvent, base_url: str, local_urls: Callable[[dict[str, Any], str], dict[str, Any]]
) -> JobEvent:
    """``event`` with this server's image links (an image's, or the end event's manifest)."""
    data = event.data
    if event.event == "image" and data.get("key"):
        data = local_urls({"images": [data]}, base_url)["images"][0]
    elif isinstance(data.get("manifest"), dict):
        data = {**data, "manifest": local_urls(data["manifest"], base_url)}
    return JobEvent(event.id, event.event, data)

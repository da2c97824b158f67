"""``POST /v1/images/generations`` on the local server: the OpenAI Images API shape over the same jobs.

The mapping is :mod:`image_pipeline.core.openai_images`, shared with the deployed Lambda; this module
adds the local parts: the caller is ``Authorization: Bearer <key>`` (the SDK's header, checked against
``imagegen serve --api-key NAME=SECRET``, on this route only; without keys the server is open, as on
every route), image links are this server's signed ``/files`` links, PNGs for ``b64_json`` are read
from moto's S3. Every answer of ``/v1/...`` is OpenAI's shape, a missing route too (404).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from image_pipeline.core.admission import QueueEstimate
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.job_control import PREFER_HEADER, run_and_wait, wait_preference
from image_pipeline.core.jobs import ApiError
from image_pipeline.core.openai_images import (
    ROUTE,
    OpenAIError,
    bearer_key,
    check_generation,
    generations_answer,
    openai_error,
    refuse_behind_queue,
)
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller

from imagegen.runtime.engine import OfflineEngine
from imagegen.runtime.local_auth import ApiKeys

AUTHORIZATION_HEADER = "authorization"


def bearer_caller(keys: ApiKeys, authorization: str | None) -> Caller:
    """The caller of an OpenAI route: the server's key sent as ``Authorization: Bearer``; 401 in
    OpenAI's shape (``openai.AuthenticationError``) when keys are required and it is none of them."""
    try:
        return keys.caller(bearer_key(authorization))
    except ApiError:
        raise OpenAIError(
            401,
            "this server needs an API key: send it as Authorization: Bearer <key> (the SDK's api_key)",
            code="invalid_api_key",
        ) from None


def add_openai_routes(
    app: FastAPI,
    *,
    engine: OfflineEngine,
    settings: Settings,
    keys: ApiKeys,
    max_wait: float,
    read_json: Callable[[Request], Awaitable[Any]],
    queue_estimate: Callable[[Mapping[str, Any]], QueueEstimate | None],
    blocking: Callable[..., Awaitable[Any]],
    local_urls: Callable[[dict[str, Any], str], dict[str, Any]],
) -> None:
    """Add ``POST /v1/images/generations`` (and OpenAI-shaped 404s under ``/v1/``) to the local app.
    ``queue_estimate`` reads the model's queue as the deployed route does (429 when it would outlast
    the wait). Call it before anything is mounted at ``/``."""

    def read_image(key: str) -> bytes:
        return bytes(engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read())

    def generate(
        submission: ExecutionInput, generation: Any, prefer: list[str], base_url: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        job_id = str(uuid.uuid4())  # as the deployed route's job is named by the API request id
        wait = wait_preference(prefer, max_wait)
        refuse_behind_queue(queue_estimate(submission.request), wait.seconds)  # nothing started
        try:
            answer = run_and_wait(
                engine.sfn,
                engine.state_machines["jobs"],
                submission,
                job_id,
                wait,
                s3=engine.s3,
                expires_in=settings.presign_expiry_seconds,
                location=lambda id_: f"/jobs/{id_}",
                ledger=engine.spend_ledger,
            )
        except ApiError as exc:  # not started (Step Functions busy, unavailable; the spend ceiling)
            raise openai_error(exc) from None
        if answer.manifest:
            answer = answer._replace(body=local_urls(answer.body, base_url))
        return generations_answer(
            answer, generation, job_id=job_id, waited=wait.seconds, read_image=read_image
        )

    @app.post(
        ROUTE,
        summary="OpenAI Images API: generate images (the openai SDK's images.generate)",
        tags=["OpenAI compatible"],
        responses={
            429: {
                "description": "Every image throttled by Bedrock, Step Functions busy, the spend ceiling, or "
                "the model's queue longer than the wait (no job started); Retry-After in seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
            504: {
                "description": "Not done within the wait: the job goes on (x-imagegen-job-id), not retried"
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "required": ["prompt"]}}},
            }
        },
    )
    async def images_generations(request: Request) -> JSONResponse:
        try:
            caller = bearer_caller(keys, request.headers.get(AUTHORIZATION_HEADER))
            try:
                raw = await read_json(request)
            except ApiError as exc:
                raise openai_error(exc) from None
            execution_input, generation = check_generation(raw, settings)
            submission = ExecutionInput(execution_input, caller)
            prefer = request.headers.getlist(PREFER_HEADER)
            body, headers = await blocking(generate, submission, generation, prefer, str(request.base_url))
        except OpenAIError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)
        return JSONResponse(body, headers=headers)

    @app.api_route(
        "/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def openai_not_found(request: Request, rest: str) -> JSONResponse:
        error = OpenAIError(
            404,
            f"no route {request.method} /v1/{rest[:200]}; this API serves POST {ROUTE}",
            code="not_found",
        )
        return JSONResponse(error.body(), status_code=404)

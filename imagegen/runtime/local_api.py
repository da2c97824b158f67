"""The HTTP API, served offline by FastAPI over an :class:`~imagegen.runtime.engine.OfflineEngine`.

Same routes, bodies and status codes as the deployed API (``docs/api.md``); the contract itself is
:mod:`image_pipeline.core.jobs`, shared with the deployed Lambda (``image_pipeline.handlers.http_api``):
the same validation before anything starts, the same :func:`~image_pipeline.core.jobs.start_job`
(idempotency) and :func:`~image_pipeline.core.jobs.sync_response` (status mapping). What differs
offline:

* ``POST /images`` starts a job of the Standard state machine in moto's interpreter and waits for it
  in a thread pool as ``Prefer: wait`` asks (at most what the deployed API can wait: 202 and the job
  after that); ``POST /jobs`` starts one and returns at once;
* image URLs point at this server (``GET /files/{key}``, read from moto's S3), because moto's
  presigned URLs cannot be fetched by a browser; like presigned URLs they are signed
  (:class:`~imagegen.runtime.local_auth.LinkSigner`), so a link reads one key until it expires
  (``link_lifetime_seconds``, as long as a deployment's lasting links); each image also has the
  lasting ``link``/``download_link`` of ``GET /links/{token}``, as deployed
  (:mod:`imagegen.runtime.local_links`);
* the caller is the ``x-api-key`` of ``imagegen serve --api-key NAME=SECRET`` (401 without a known
  key), or, on a server started without keys, one anonymous caller
  (:class:`~imagegen.runtime.local_auth.ApiKeys`, :func:`caller_of`);
* ``put_request_event`` plays an EventBridge rule whose target is the Standard workflow.

``create_app(engine)`` builds the app; ``imagegen serve`` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from image_pipeline.contract.errors import FieldError, InvalidRequest, is_not_found
from image_pipeline.contract.request import ImageRequest
from image_pipeline.core import time_budget
from image_pipeline.core.admission import QueueEstimate
from image_pipeline.core.admission_runtime import read_queue_estimate
from image_pipeline.core.events import REQUEST_EVENT
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.image_index import search_images
from image_pipeline.core.job_control import (
    PREFER_HEADER,
    PREFERENCE_APPLIED_HEADER,
    WaitPreference,
    cancel_job,
    list_jobs,
    list_query,
    retry_accepted,
    retry_body,
    retry_job,
    run_and_wait,
    wait_preference,
)
from image_pipeline.core.jobs import (
    IDEMPOTENCY_HEADER,
    MAX_BODY_BYTES,
    ApiError,
    body_too_large,
    describe_job,
    job_accepted,
    model_catalog,
    parse_body,
    query_request,
    start_job,
    validate_submission,
)
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.manifest import attachment
from image_pipeline.core.tenancy import Caller, events_caller
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegen.runtime.engine import ACCOUNT, EVENT_BUS, REGION, OfflineEngine
from imagegen.runtime.local_auth import API_KEY_HEADER, ApiKeys, LinkSigner
from imagegen.runtime.local_events import add_event_routes
from imagegen.runtime.local_links import (
    DEFAULT_LINK_LIFETIME_SECONDS,
    add_link_routes,
    object_exists,
    with_lasting_links,
)
from imagegen.runtime.local_openai import add_openai_routes

#: Longest wait of ``POST /images``: what the deployed API waits at most (API Gateway's integration
#: timeout less the function's margin), so a client meets the same 202 handoff offline.
SYNC_MAX_WAIT_SECONDS = time_budget.longest_sync_wait(time_budget.API_GATEWAY_INTEGRATION_SECONDS)
CONFIG_JS = 'window.IMAGEGEN_CONFIG = {"apiUrl": "", "apiKey": null};\n'
#: The page's settings when the server needs a key: the page asks for one.
CONFIG_JS_KEY_REQUIRED = 'window.IMAGEGEN_CONFIG = {"apiUrl": "", "apiKey": null, "apiKeyRequired": true};\n'
_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImageRequest"}}},
}


# -- response shapes, for the OpenAPI document (the handlers answer with plain JSON) ---------------


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str = Field(description="InvalidRequest, AllImagesFiltered, ImagesThrottled, JobNotFound, ...")
    message: str
    details: list[FieldProblem] | None = Field(default=None, description="InvalidRequest: each field.")


JobStatus = Literal["queued", "running", "cancelling", "succeeded", "cancelled", "failed"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class RetriedImage(BaseModel):
    index: int
    seed: int


class RetryAccepted(JobAccepted):
    retry_of: str = Field(description="The job retried")
    images: list[RetriedImage] = Field(description="The images made again, with their seeds")


class JobProgress(BaseModel):
    total: int | None
    done: int
    failed: int


class QueueAhead(BaseModel):
    """The model's admission queue a synchronous request was handed over behind (docs/api.md)."""

    ahead: int = Field(description="Images already waiting for a slot of the model")
    estimated_seconds: int = Field(description="About how long until the request's last image starts")


class Job(BaseModel):
    job_id: str
    status: JobStatus
    started_at: str | None
    stopped_at: str | None
    progress: JobProgress | None = None
    images_so_far: list[dict[str, Any]] | None = Field(
        default=None, description="While it runs: each image stored, filtered or failed so far, first first."
    )
    manifest: dict[str, Any] | None = Field(default=None, description="When succeeded; fresh URLs.")
    error: ErrorBody | None = Field(default=None, description="When failed.")
    queue: QueueAhead | None = Field(
        default=None,
        description="POST/GET /images handed over at once behind a queue longer than the wait (with Retry-After).",
    )


class JobThumbnail(BaseModel):
    key: str
    url: str = Field(description="A signed link to the image (presigned deployed)")


class JobSummary(BaseModel):
    """One job of GET /jobs: what a history view shows (docs/api.md, "Listing")."""

    job_id: str
    status: Literal["running", "cancelling", "succeeded", "cancelled", "failed"]
    started_at: str | None
    stopped_at: str | None
    status_url: str
    created_at: str | None
    prompt: str | None
    negative_prompt: str | None
    model: str | None
    count: int | None
    succeeded: int | None
    filtered: int | None
    failed: int | None
    cost_usd: float | None
    retry_of: str | None
    error: dict[str, str] | None
    thumbnail: JobThumbnail | None = Field(description="The first stored image; null while running")


class JobList(BaseModel):
    jobs: list[JobSummary] = Field(description="Newest first")
    next_token: str | None = Field(description="More to read: pass it back (with the same status)")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request (fields named), or every image filtered"},
    413: {"model": ErrorBody, "description": "Body over 64 KiB"},
    415: {"model": ErrorBody, "description": "Not application/json"},
}
_SYNC_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {"description": "The manifest", "content": {"application/json": {"schema": {"type": "object"}}}},
    202: {
        "model": Job,
        "description": "Not done within the wait (Prefer: wait=N): the job, and Location; at once, with "
        "queue and Retry-After, behind a model's queue longer than the wait",
        "headers": {
            "Location": {"schema": {"type": "string"}, "description": "The job: /jobs/{id}"},
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Behind a queue: its estimate in seconds (when GET /jobs/{id} is worth asking)",
            },
        },
    },
    409: {"model": ErrorBody, "description": "The job was cancelled while the request waited"},
    429: {"model": ErrorBody, "description": "Every image throttled by Bedrock, after retries"},
    502: {"model": ErrorBody, "description": "The workflow failed otherwise"},
    504: {"model": ErrorBody, "description": "The workflow timed out (its 30 minutes)"},
}
_PREFER = {
    "name": PREFER_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "example": "wait=10"},
    "description": "RFC 7240: wait=N seconds at most (capped), or respond-async; answered in Preference-Applied.",
}


# -- the app -----------------------------------------------------------------------------------------


def with_local_urls(
    manifest: dict[str, Any], base_url: str, signer: LinkSigner, expires_in: int
) -> dict[str, Any]:
    """A copy of ``manifest`` whose image URLs are served by this server's ``/files`` route (with
    ``download=1``, as an attachment: what S3 does for a presigned ``download_url``), signed by
    ``signer`` for ``expires_in`` seconds, as S3 signs a presigned URL."""
    base = base_url.rstrip("/")
    images = []
    for image in manifest.get("images", []):
        if image.get("key"):
            url = f"{base}/files/{quote(image['key'])}?{signer.query(image['key'], expires_in)}"
            image = {**image, "url": url, "download_url": f"{url}&download=1"}
        images.append(image)
    return {**manifest, "images": images}


def caller_of(request: Request) -> Caller:
    """The caller of a request to the local server: its ``x-api-key``'s (401 when the server has keys
    and this is none of them), or the one anonymous caller of a server without keys. Every API route
    calls it first; so may a route added later (``Depends(caller_of)`` or a plain call)."""
    keys: ApiKeys = request.app.state.api_keys
    return keys.caller(request.headers.get(API_KEY_HEADER))


def create_app(
    engine: OfflineEngine,
    *,
    web_dir: str | Path | None = None,
    cors_origins: list[str] | None = None,
    max_wait: float = SYNC_MAX_WAIT_SECONDS,
    max_body_bytes: int = MAX_BODY_BYTES,
    workers: int = 32,
    api_keys: Mapping[str, str] | None = None,
    link_lifetime_seconds: int = DEFAULT_LINK_LIFETIME_SECONDS,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API over a started engine. ``web_dir`` (or ``IMAGEGEN_WEB_DIR``) is served at ``/``;
    ``cors_origins`` (or comma-separated ``IMAGEGEN_CORS_ORIGINS``) may call it from elsewhere;
    ``api_keys`` (name -> secret, ``imagegen serve --api-key NAME=SECRET``) makes every API route need
    ``x-api-key`` and gives each key its own caller (none: the server is open, one anonymous caller)."""
    settings = engine.config.handler_settings()
    keys = ApiKeys(dict(api_keys or {}))
    # The engine's link secret: links in the stored manifests and webhooks (minted by the functions)
    # are followed here. ``clock``: tests see links expire.
    signer = LinkSigner(secret=engine.link_secret or None, clock=clock)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagegen-api")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="imagegen API (offline)",
        version="1",
        description="Parallel image generation on Amazon Bedrock with AWS Step Functions; this server "
        "runs the workflow offline. Images are placeholder renders, not model output.",
        lifespan=lifespan,
    )
    app.state.api_keys = keys

    def local_urls(manifest: dict[str, Any], base_url: str) -> dict[str, Any]:
        """``manifest`` with this server's signed image links (see :func:`with_local_urls`)."""
        signed = with_local_urls(manifest, base_url, signer, link_lifetime_seconds)
        return with_lasting_links(signed, base_url, signer, link_lifetime_seconds)

    async def blocking(func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    # FastAPI's own answers (no such route, method, or a bad query parameter of /files) in the
    # API's error shape, {"error", "message"}, like every other answer.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        error = names.get(exc.status_code, "HttpError")
        message = (
            f"no route {request.method} {request.url.path[:200]}"
            if exc.status_code in names
            else str(exc.detail)
        )
        return JSONResponse(
            {"error": error, "message": message},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def parameter_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(str(e["loc"][-1]), str(e["msg"])) for e in exc.errors()]
        return await api_error(request, ApiError.invalid(errors))

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise body_too_large(int(declared), max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():  # a chunked body has no Content-Length: cap it here
            body.extend(chunk)
            if len(body) > max_body_bytes:
                raise body_too_large(None, max_body_bytes)
        return parse_body(bytes(body), request.headers.get("content-type"), max_bytes=max_body_bytes)

    dynamodb = functools.cache(lambda: boto3.client("dynamodb", region_name=REGION))

    def queue_estimate(execution_input: Mapping[str, Any]) -> QueueEstimate | None:
        """How long the request would wait behind its model's queue, as the deployed routes read it
        (the engine's settings now: ``set_quotas`` changes them)."""
        return read_queue_estimate(engine.config.handler_settings(), dynamodb, execution_input)

    def run_sync(
        submission: ExecutionInput, wait: WaitPreference, base_url: str
    ) -> tuple[int, Any, dict[str, str]]:
        # Named as the deployed Lambda names it: the caller's namespace and a request id.
        queue = queue_estimate(submission.request)
        answer = run_and_wait(
            engine.sfn,
            engine.state_machines["jobs"],
            submission,
            str(uuid.uuid4()),
            wait,
            s3=engine.s3,
            expires_in=settings.presign_expiry_seconds,
            location=lambda job_id: f"/jobs/{job_id}",
            ledger=engine.spend_ledger,
            index=engine.image_index,
            bucket=engine.config.bucket,
            queue=queue,
        )
        body = local_urls(answer.body, base_url) if answer.manifest else answer.body
        if "images_so_far" in body:  # a 202: the images stored while it waited, with this server's links
            body = {
                **body,
                "images_so_far": local_urls({"images": body["images_so_far"]}, base_url)["images"],
            }
        return answer.status, body, answer.headers

    async def generate(raw: Any, request: Request) -> JSONResponse:
        caller = caller_of(request)
        execution_input, _ = validate_submission(raw, settings=settings, caller=caller, s3=engine.s3)
        submission = ExecutionInput(execution_input, caller)
        wait = wait_preference(request.headers.getlist(PREFER_HEADER), max_wait)
        status, body, headers = await blocking(run_sync, submission, wait, str(request.base_url))
        return JSONResponse(body, status_code=status, headers=headers)

    @app.post(
        "/images",
        summary="Generate images and wait for them (Prefer: wait=N); 202 and the job if not done in time",
        openapi_extra={"requestBody": _REQUEST_BODY, "parameters": [_PREFER]},
        responses=_SYNC_ERRORS,
    )
    async def post_images(request: Request) -> JSONResponse:
        caller_of(request)  # 401 before the body is read
        return await generate(await read_json(request), request)

    @app.get(
        "/images",
        summary="The simple form: GET /images?prompt=...&count=...",
        responses=_SYNC_ERRORS,
        openapi_extra={"parameters": [_PREFER]},
    )
    async def get_images(request: Request) -> JSONResponse:
        caller_of(request)  # 401 before the query is read
        return await generate(query_request(request.query_params.multi_items()), request)

    @app.post(
        "/jobs",
        status_code=202,
        summary="Start a job (Standard workflow); poll GET /jobs/{id}",
        openapi_extra={
            "requestBody": _REQUEST_BODY,
            "parameters": [
                {
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "description": "Same key, same job: a retry starts nothing new.",
                }
            ],
        },
        responses={
            **_ERRORS,
            202: {"model": JobAccepted, "description": "Started (or the job of this idempotency key)"},
            409: {"model": ErrorBody, "description": "Idempotency key used for a different request"},
        },
    )
    async def post_jobs(request: Request) -> JSONResponse:
        caller = caller_of(request)
        raw = await read_json(request)
        execution_input, key = validate_submission(
            raw,
            settings=settings,
            idempotency_header=request.headers.get(IDEMPOTENCY_HEADER),
            caller=caller,
            s3=engine.s3,
        )
        submission = ExecutionInput(execution_input, caller)
        started = await blocking(
            lambda: start_job(
                engine.sfn,
                engine.state_machines["jobs"],
                submission,
                key,
                ledger=engine.spend_ledger,
                index=engine.image_index,
            )
        )
        body = job_accepted(started.job_id, started.status)
        return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})

    def local_job(caller: Caller, job_id: str, base_url: str) -> dict[str, Any]:
        """The deployed API's job document, with this server's image URLs."""
        job = describe_job(
            engine.sfn,
            engine.state_machines["jobs"],
            job_id,
            caller=caller,
            s3=engine.s3,
            expires_in=settings.presign_expiry_seconds,
            bucket=engine.config.bucket,
        )
        if "manifest" in job:
            job["manifest"] = local_urls(job["manifest"], base_url)
        if "images_so_far" in job:
            job["images_so_far"] = local_urls({"images": job["images_so_far"]}, base_url)["images"]
        return job

    @app.get(
        "/jobs/{job_id}",
        summary="A job's status, progress, and manifest (URLs issued anew) or error",
        responses={200: {"model": Job}, 404: {"model": ErrorBody, "description": "No such job"}},
    )
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        caller = caller_of(request)
        return JSONResponse(await blocking(local_job, caller, job_id, str(request.base_url)))

    @app.get(
        "/jobs",
        summary="The caller's jobs, newest first (status, limit 1-100, next_token)",
        responses={200: {"model": JobList}, 400: {"model": ErrorBody, "description": "A bad parameter"}},
    )
    async def get_jobs(request: Request) -> JSONResponse:
        caller = caller_of(request)
        status, limit, cursor = list_query(request.query_params.multi_items())
        base = str(request.base_url).rstrip("/")
        listed = await blocking(
            lambda: list_jobs(
                engine.image_index,
                caller,
                sfn=engine.sfn,
                state_machine_arn=engine.state_machines["jobs"],
                s3=engine.s3,
                bucket=engine.config.bucket,
                presign=lambda key: f"{base}/files/{quote(key)}?{signer.query(key, link_lifetime_seconds)}",
                status=status,
                limit=limit,
                cursor=cursor,
            )
        )
        return JSONResponse(listed)

    @app.delete(
        "/jobs/{job_id}",
        status_code=202,
        summary="Cancel a running job; it ends with a manifest of what it made",
        responses={
            202: {"model": JobAccepted, "description": "Cancelling"},
            404: {"model": ErrorBody, "description": "No such job"},
            409: {"model": ErrorBody, "description": "Already ended, or already cancelled"},
        },
    )
    async def delete_job(job_id: str, request: Request) -> JSONResponse:
        caller = caller_of(request)
        body = await blocking(
            lambda: cancel_job(
                engine.sfn,
                engine.state_machines["jobs"],
                caller,
                job_id,
                s3=engine.s3,
                bucket=engine.config.bucket,
            )
        )
        return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})

    @app.post(
        "/jobs/{job_id}/retry",
        status_code=202,
        summary="A new job of the images that failed (and, asked, those filtered), same seeds",
        responses={
            202: {"model": RetryAccepted, "description": "Started"},
            404: {"model": ErrorBody, "description": "No such job"},
            409: {"model": ErrorBody, "description": "Still running, or nothing to retry"},
        },
    )
    async def post_retry(job_id: str, request: Request) -> JSONResponse:
        caller = caller_of(request)
        has_body = request.headers.get("content-length", "0") not in {
            "",
            "0",
        } or "chunked" in request.headers.get("transfer-encoding", "")
        include_filtered = retry_body(await read_json(request) if has_body else None)
        retry = await blocking(
            lambda: retry_job(
                engine.sfn,
                engine.state_machines["jobs"],
                caller,
                job_id,
                s3=engine.s3,
                include_filtered=include_filtered,
                ledger=engine.spend_ledger,
                index=engine.image_index,
            )
        )
        body = retry_accepted(retry, job_id)
        return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})

    @app.get(
        "/images/search",
        summary="The caller's images by prompt words (q), model and time (since, until), newest first",
        responses={400: {"model": ErrorBody, "description": "A bad parameter, or none given"}},
    )
    async def get_images_search(request: Request) -> JSONResponse:
        caller = caller_of(request)
        base = str(request.base_url).rstrip("/")

        def presign(key: str) -> str:
            return f"{base}/files/{quote(key)}?{signer.query(key, link_lifetime_seconds)}"

        def search() -> dict[str, Any]:
            try:
                return search_images(
                    engine.image_index,
                    caller.namespace,
                    dict(request.query_params),
                    allowed_models=settings.allowed_models,
                    presign=presign,
                )
            except InvalidRequest as exc:
                raise ApiError.invalid(list(exc.errors)) from None
            except LookupError as exc:
                raise ApiError(503, "IndexUnavailable", str(exc)) from None

        return JSONResponse(await blocking(search))

    @app.get("/models", summary="The model registry and what this deployment offers")
    async def get_models(request: Request) -> JSONResponse:
        caller_of(request)  # deployed, API Gateway asks for the key on every route
        return JSONResponse(model_catalog(settings))

    # GET /jobs/{id}/events: Server-Sent Events, one open stream (imagegen/runtime/local_events.py)
    add_event_routes(
        app, engine=engine, settings=settings, caller_of=caller_of, blocking=blocking, local_urls=local_urls
    )

    # POST /v1/images/generations, the OpenAI Images API shape (Authorization: Bearer on it alone)
    add_openai_routes(
        app,
        engine=engine,
        settings=settings,
        keys=keys,
        max_wait=max_wait,
        read_json=read_json,
        queue_estimate=queue_estimate,
        blocking=blocking,
        local_urls=local_urls,
    )

    def read_file(key: str) -> tuple[bytes, str]:
        try:
            stored = engine.s3.get_object(Bucket=engine.config.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                raise ApiError(404, "FileNotFound", f"no file {key[:200]!r}") from None
            raise
        return stored["Body"].read(), stored.get("ContentType") or "application/octet-stream"

    def readable(request: Request, key: str, expires: int | None, signature: str | None) -> None:
        """Whether this request may read ``key``: a signed link to it that has not expired (403
        otherwise), or, unsigned, the caller's own key (another caller's is 404, like a missing one)."""
        if expires is not None or signature is not None:
            if expires is None or signature is None or not signer.valid(key, expires, signature):
                raise ApiError(403, "AccessDenied", "the link is not valid for this file, or it has expired")
            return
        if not key.startswith(namespace_prefix(caller_of(request).namespace)):
            raise ApiError(404, "FileNotFound", f"no file {key[:200]!r}")

    @app.get("/files/{key:path}", summary="A stored image (offline stand-in for a presigned URL)")
    async def get_file(
        request: Request,
        key: str,
        download: bool = False,
        expires: int | None = None,
        signature: str | None = None,
    ) -> Response:
        readable(request, key, expires, signature)
        body, content_type = await blocking(read_file, key)
        headers = {"Cache-Control": "no-store"}
        if download:
            headers["Content-Disposition"] = attachment(key)
        return Response(body, media_type=content_type, headers=headers)

    # GET /links/{token}: lasting links, as deployed (imagegen/runtime/local_links.py)
    add_link_routes(
        app, signer=signer, exists=object_exists(engine.s3, engine.config.bucket), blocking=blocking
    )

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    origins = cors_origins
    if origins is None:
        origins = [o.strip() for o in os.environ.get("IMAGEGEN_CORS_ORIGINS", "").split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "X-Api-Key", IDEMPOTENCY_HEADER, PREFER_HEADER, "Last-Event-ID"],
            expose_headers=["Location", PREFERENCE_APPLIED_HEADER],
        )

    web = web_dir or os.environ.get("IMAGEGEN_WEB_DIR")
    if web:

        @app.get("/config.js", include_in_schema=False)
        async def config_js() -> Response:
            text = CONFIG_JS_KEY_REQUIRED if keys.required else CONFIG_JS
            return Response(text, media_type="text/javascript", headers={"Cache-Control": "no-store"})

        app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    else:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus ImageRequest (the raw-body routes reference it) in the components."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema = ImageRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["ImageRequest"] = schema
    app.openapi_schema = document
    return document


# -- events ------------------------------------------------------------------------------------------


def put_request_event(
    engine: OfflineEngine,
    detail: dict[str, Any],
    *,
    source: str = "imagegen.client",
    whole_event: bool = False,
) -> str:
    """Put an ``ImageGenerationRequested`` event on the engine's bus and start the Standard workflow
    as the deployed rule's target does: with the envelope its input transformer writes, the event's
    ``detail`` as the request and ``events:<account>`` as the caller (``whole_event``: the event
    itself, which the validate step unwraps the same way). Returns the execution ARN."""
    events = boto3.client("events", region_name=REGION)
    put = events.put_events(
        Entries=[
            {
                "EventBusName": EVENT_BUS,
                "Source": source,
                "DetailType": REQUEST_EVENT,
                "Detail": json.dumps(detail),
            }
        ]
    )
    entry = put["Entries"][0]
    if "EventId" not in entry:
        raise RuntimeError(f"the bus refused the event: {entry}")
    event = {
        "version": "0",
        "id": entry["EventId"],
        "detail-type": REQUEST_EVENT,
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
    if whole_event:
        return engine.start_execution(event, kind="jobs")
    envelope = ExecutionInput(event["detail"], events_caller(event["account"])).to_document()
    return engine.start_execution(envelope, kind="jobs")

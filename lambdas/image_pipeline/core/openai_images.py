"""The OpenAI Images API shape over the same jobs: ``POST /v1/images/generations``.

Clients written for OpenAI's Images API (the ``openai`` SDKs, LiteLLM, Open WebUI, ...) send
``{"prompt", "model", "n", "size", "response_format", "quality", "style", "user"}`` and read
``{"created", "data": [{"url" | "b64_json"}]}``; errors they read as ``{"error": {"message", "type",
"param", "code"}}`` with the status the SDK turns into its exception class. This module is the
mapping, both ways, shared by the deployed Lambda (``handlers/http_api.py``) and the local server:

* :func:`to_image_request` turns the OpenAI body into our request (``n`` -> ``count``, ``size`` -> the
  model's size or aspect ratio, exactly, ``quality`` -> ours), keeping our own fields (``seed``,
  ``negative_prompt``, ``output_folder``, ...) as extra fields; :func:`check_generation` then checks it
  with :func:`~image_pipeline.core.jobs.validate_submission` (the one check every entry point uses) and
  names OpenAI's field in ``param``.
* :func:`generations_answer` turns a synchronous route's answer (:class:`~image_pipeline.core.
  job_control.SyncAnswer`) into OpenAI's: 200 with the images, or an :class:`OpenAIError`. A job that
  outlasts the wait is a 504 that says ``x-should-retry: false`` and carries the job id (header and
  message): OpenAI clients do not follow a 202, and a retry would start, and pay for, another job.
* :func:`openai_error` is every other failure in OpenAI's shape (:data:`RETRY_AFTER_SECONDS` for 429).
* :func:`refuse_behind_queue`: before anything starts, a 429 with ``Retry-After`` when the model's
  queue would outlast the wait (:func:`queue_too_long`): nothing is started or paid for.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import gcd
from typing import Any

from image_pipeline.contract.errors import FieldError
from image_pipeline.contract.request import ImageRequest
from image_pipeline.core.admission import QueueEstimate
from image_pipeline.core.job_control import SyncAnswer
from image_pipeline.core.jobs import ApiError, validate_submission
from image_pipeline.core.settings import Settings
from image_pipeline.models.base import IMAGE_FIELDS, ImageModelAdapter
from image_pipeline.models.registry import list_adapters, resolve_model

ROUTE = "/v1/images/generations"
#: The response header that names the job (the manifest's request id): ``GET /jobs/{id}`` reads it.
JOB_ID_HEADER = "x-imagegen-job-id"
#: Stainless-generated SDKs (``openai``) obey this header over their own retry rules.
SHOULD_RETRY_HEADER = "x-should-retry"
#: OpenAI model names: refused (400, ``param: model``) with the models this deployment offers, never
#: mapped to one of ours, whose sizes, qualities and prices differ (docs/decisions.md).
OPENAI_MODELS = re.compile(r"^(dall-e-\d.*|gpt-image-.*|chatgpt-image-.*)$", re.IGNORECASE)
RESPONSE_FORMATS = ("url", "b64_json")
#: ``quality``: what each OpenAI value is here. ``auto`` (and no value) is the model's default;
#: ``standard`` is ours (a model with a single quality makes only its standard one); ``hd`` and ``high``
#: are ``premium`` where the model has it; ``low`` and ``medium`` have no counterpart and are refused.
QUALITY_AUTO = "auto"
QUALITY_PREMIUM = frozenset({"hd", "high"})
QUALITY_VALUES = ("auto", "standard", "hd", "low", "medium", "high")
#: OpenAI fields that are ours under another name (and may not be sent under ours as well).
RENAMED = {"n": "count", "size": "width, height or aspect_ratio"}
#: Our field -> the OpenAI field a refusal names in ``param``.
_PARAM_OF = {"count": "n"}
#: Retry-After (seconds) of a 429, by our error name: Bedrock throttled every image after the
#: workflow's own retries (its per-minute quotas), or Step Functions is busy.
RETRY_AFTER_SECONDS = {"ImagesThrottled": 5, "TooManyRequests": 1}
#: The largest answer with ``b64_json`` images: a Lambda function's synchronous response is at most
#: 6 MB (API Gateway's own limit is 10 MB); less room for the JSON around the images.
MAX_B64_RESPONSE_BYTES = 6_000_000
_SIZE = re.compile(r"([1-9][0-9]{1,4})x([1-9][0-9]{1,4})")  # fullmatch: $ also matches before a final \n
_OPENAI_TYPE = {
    401: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODE = {
    "AllImagesFiltered": "content_policy_violation",  # what OpenAI answers for a refused prompt
    "Unauthorized": "invalid_api_key",
    "NotFound": "not_found",
    "InvalidRequest": "invalid_value",
}


@dataclass
class OpenAIError(Exception):
    """An answer in OpenAI's error shape: HTTP status, ``message``, ``type``, ``param``, ``code``, and
    headers (``Retry-After``, ``x-should-retry``, the job id)."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    """400 naming one OpenAI field (``openai.BadRequestError``, its ``param``)."""
    return OpenAIError(400, f"{param}: {message}", param=param, code=code)


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, the SDK's (None without one)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


# -- the request -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """An OpenAI request read as ours: our request, the answer's format, the ``user`` it named, and
    which OpenAI field each of our fields came from (for ``param``)."""

    request: dict[str, Any]
    response_format: str
    user: str | None
    param_of: Mapping[str, str]


def to_image_request(raw: Any, settings: Settings) -> Generation:
    """Read an OpenAI ``images.generate`` body as our request. Raises :class:`OpenAIError` (400) for
    what is OpenAI's to refuse (a value of ``n``, ``size``, ``response_format``, ``quality``, ``user``
    or ``model`` that cannot be served exactly); our own fields go through as they are, and
    :func:`check_generation` checks the whole with our one check."""
    if not isinstance(raw, dict):
        raise invalid("body", "send a JSON object")
    body = dict(raw)
    for ours, openai_name in (("count", "n"),):
        if ours in body:
            raise invalid(ours, f"send {openai_name} (the OpenAI field) instead", code="unknown_parameter")
    for ours in ("operation", *IMAGE_FIELDS):
        if ours in body:  # images.generate draws from a prompt alone
            raise invalid(
                ours,
                "refining a stored image is POST /images with source_image and operation",
                code="unknown_parameter",
            )
    request: dict[str, Any] = {k: v for k, v in body.items() if k not in _OPENAI_FIELDS}
    param_of: dict[str, str] = dict(_PARAM_OF)

    if "prompt" in body:
        request["prompt"] = body["prompt"]
    model = body.get("model")
    if model is not None:
        if isinstance(model, str) and OPENAI_MODELS.match(model):
            offered = ", ".join(settings.allowed_models or [a.registry_id for a in list_adapters()])
            raise invalid(
                "model",
                f"{model[:100]} is an OpenAI model; this deployment serves {offered} "
                f"(leave model out for {settings.default_model})",
                code="model_not_found",
            )
        request["model"] = model
    n = body.get("n", 1)  # OpenAI's default is one image (ours is four)
    request["count"] = 1 if n is None else n

    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise invalid("response_format", f"must be url or b64_json, not {str(response_format)[:50]!r}")

    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise invalid("user", "must be text of at most 256 characters")

    for name in ("stream", "partial_images"):
        if body.get(name):
            raise invalid(name, "streaming is not offered; leave it out", code="unsupported_value")
    output_format = body.get("output_format")
    if output_format is not None and output_format != "png":
        raise invalid("output_format", f"the images are PNG; send png or leave it out, not {output_format!r}")

    adapter = resolve_model(
        model if isinstance(model, str) else settings.default_model, allowed=settings.allowed_models
    )
    size = body.get("size")
    if size is not None and size != "auto":
        conflicting = [name for name in ("width", "height", "aspect_ratio") if name in body]
        if conflicting:
            raise invalid("size", f"send size or {', '.join(conflicting)}, not both")
        if not isinstance(adapter, FieldError):  # else the model is refused by the check, with the rest
            request.update(size_fields(size, adapter.registry_id, adapter.describe()))
        param_of.update({"width": "size", "height": "size", "aspect_ratio": "size"})

    quality = body.get("quality")
    if quality is not None and quality != QUALITY_AUTO:
        qualities = () if isinstance(adapter, FieldError) else qualities_of(adapter)
        name = "" if isinstance(adapter, FieldError) else adapter.registry_id
        request_quality = quality_field(quality, qualities, model_name=name)
        if request_quality is not None:
            request["quality"] = request_quality
    return Generation(request, str(response_format), user, param_of)


#: The OpenAI fields read by :func:`to_image_request` (every other field is ours, passed through).
_OPENAI_FIELDS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "size",
        "response_format",
        "quality",
        "user",
        "stream",
        "partial_images",
        "output_format",
    }
)


def size_fields(size: Any, model: str, described: Mapping[str, Any]) -> dict[str, Any]:
    """Our size fields for OpenAI's ``size`` (``WxH``), exactly or not at all.

    A model that takes width and height (Titan, Nova Canvas) gets them as given; its own check then
    refuses a size it cannot make, with its sizes. A model that takes an aspect ratio and picks the
    pixels itself (the Stability models) gets the ratio ``WxH`` reduces to, when it is one of its ratios
    exactly (``1024x1024`` -> ``1:1``, ``1536x1024`` -> ``3:2``); any other size is refused with the
    ratios it takes. Never the nearest size or ratio."""
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None:
        raise invalid("size", f"must be WIDTHxHEIGHT (such as 1024x1024) or auto, not {str(size)[:50]!r}")
    width, height = int(match.group(1)), int(match.group(2))
    ratios = described.get("aspect_ratios")
    if ratios:
        ratio = _reduced(width, height)
        if ratio not in ratios:
            listed = ", ".join(ratios)
            raise invalid(
                "size",
                f"{model} makes images of the aspect ratios {listed} (it picks the pixels, about one "
                f"megapixel: 1:1 is 1024x1024), not {width}x{height} ({ratio}); send a size of one of "
                "those ratios, or auto",
            )
        return {"aspect_ratio": ratio}
    return {"width": width, "height": height}


def _reduced(width: int, height: int) -> str:
    g = gcd(width, height)
    return f"{width // g}:{height // g}"


def qualities_of(adapter: ImageModelAdapter) -> tuple[str, ...]:
    """The qualities a model takes (``standard``, ``premium``), or none: asked of its own check."""
    probe = ImageRequest(prompt="quality probe", quality="premium", count=1)
    refused = any(error.field == "quality" for error in adapter.validate(probe))
    return () if refused else ("standard", "premium")


def quality_field(quality: Any, takes: tuple[str, ...], *, model_name: str) -> str | None:
    """Our ``quality`` for OpenAI's (``auto`` is handled by the caller: no field)."""
    if quality not in QUALITY_VALUES:
        raise invalid("quality", f"must be one of {', '.join(QUALITY_VALUES)}, not {str(quality)[:50]!r}")
    if quality == "standard":
        return "standard" if takes else None  # a model with one quality makes its standard one
    if quality in QUALITY_PREMIUM and "premium" in takes:
        return "premium"
    offered = "standard or auto" + (", hd or high (premium)" if "premium" in takes else "")
    raise invalid("quality", f"{model_name or 'this model'} takes quality {offered}, not {quality}")


def check_generation(raw: Any, settings: Settings) -> tuple[dict[str, Any], Generation]:
    """The execution input of an OpenAI body (:func:`to_image_request`, then our one check), or an
    :class:`OpenAIError` whose ``param`` names the OpenAI field to change."""
    generation = to_image_request(raw, settings)
    try:
        execution_input, _ = validate_submission(generation.request, settings=settings)
    except ApiError as exc:
        raise openai_error(exc, param_of=generation.param_of) from None
    return execution_input, generation


# -- the answer --------------------------------------------------------------------------------------


def openai_error(
    exc: ApiError, *, param_of: Mapping[str, str] = _PARAM_OF, job_id: str | None = None
) -> OpenAIError:
    """Our :class:`~image_pipeline.core.jobs.ApiError` in OpenAI's shape, with a status the SDK maps to
    its exception classes: 400 (our 413 and 415 too: ``BadRequestError``), 401, 404, 409, 429 (with
    ``Retry-After``), 500, 502, 503, 504. ``param`` is the first field named, as OpenAI calls it; the
    message keeps every field's problem. A failure after a job ran carries the job id and
    ``x-should-retry: false`` (a retry would start, and pay for, another job)."""
    status = 400 if exc.status in {413, 415} else exc.status
    param = None
    if exc.details:
        first = exc.details[0].field
        param = param_of.get(first, first)
    message = exc.message
    if exc.details:
        message = "; ".join(f"{param_of.get(d.field, d.field)}: {d.message}" for d in exc.details)
    headers: dict[str, str] = {}
    if status == 429:
        headers["Retry-After"] = exc.headers.get("Retry-After") or str(RETRY_AFTER_SECONDS.get(exc.error, 1))
    elif status >= 500:
        headers[SHOULD_RETRY_HEADER] = "true" if status == 503 else "false"
    if job_id is not None:
        headers[JOB_ID_HEADER] = job_id
        if status not in {429, 503}:
            headers[SHOULD_RETRY_HEADER] = "false"
    kind = "server_error" if status >= 500 else _OPENAI_TYPE.get(status, "invalid_request_error")
    code = _OPENAI_CODE.get(exc.error, exc.error)
    if status == 429:
        code = "rate_limit_exceeded"
    return OpenAIError(status, message, kind, param, code, headers)


def still_running(job_id: str, waited: float) -> OpenAIError:
    """The answer when the job outlasted the wait: 504 (``openai.InternalServerError``), not retried
    (``x-should-retry: false``: the job goes on and a retry would start another), naming the job."""
    return OpenAIError(
        504,
        f"the images were not ready within {waited:g} s; job {job_id} goes on and stores them: "
        f"GET /jobs/{job_id} on the imagegen API has its manifest (or use POST /jobs for long requests)",
        "server_error",
        None,
        "JobStillRunning",
        {JOB_ID_HEADER: job_id, SHOULD_RETRY_HEADER: "false"},
    )


def queue_too_long(queue: QueueEstimate, waited: float) -> OpenAIError:
    """429 (``openai.RateLimitError``) before any job is started, when the model's queue would hold the
    request past the wait (:meth:`~image_pipeline.core.admission.QueueEstimate.outlasts`): OpenAI
    clients do not follow a 202, and the job would end in :func:`still_running` after holding the
    connection for the whole wait. ``Retry-After`` is the estimate: the ``openai`` SDK waits it before
    its own retry when it is at most two minutes, and raises at once when it is longer."""
    return OpenAIError(
        429,
        f"the queue of {queue.model} is {queue.ahead} images long, about {queue.seconds} s before this "
        f"request's {queue.images} images are made (this route waits {waited:g} s); try again later, "
        "or use POST /jobs on the imagegen API, which queues the job and answers at once",
        _OPENAI_TYPE[429],
        None,
        "rate_limit_exceeded",
        {"Retry-After": str(queue.seconds)},
    )


def refuse_behind_queue(queue: QueueEstimate | None, waited: float) -> None:
    """Raise :func:`queue_too_long` when ``queue`` (None: admission off, or not read) outlasts the wait."""
    if queue is not None and queue.outlasts(waited):
        raise queue_too_long(queue, waited)


def generations_answer(
    answer: SyncAnswer,
    generation: Generation,
    *,
    job_id: str,
    waited: float,
    read_image: Callable[[str], bytes],
) -> tuple[dict[str, Any], dict[str, str]]:
    """OpenAI's answer (body and headers) of a synchronous route's :class:`SyncAnswer`, whose manifest
    already has its image links: 200 with the images; the failure as :func:`openai_error`; a job still
    running as :func:`still_running`. Raises :class:`OpenAIError` for every answer but the 200."""
    if answer.status == 202:
        raise still_running(job_id, waited)
    if answer.status != 200 or not answer.manifest:
        body = answer.body if isinstance(answer.body, dict) else {}
        error = ApiError(
            answer.status, str(body.get("error", "ExecutionFailed")), str(body.get("message", ""))
        )
        raise openai_error(error, job_id=job_id)
    body = generations_body(answer.body, generation.response_format, read_image=read_image, job_id=job_id)
    return body, {JOB_ID_HEADER: job_id}


def generations_body(
    manifest: Mapping[str, Any],
    response_format: str,
    *,
    read_image: Callable[[str], bytes],
    job_id: str,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """OpenAI's answer of a finished job: ``{"created", "data"}``, one entry per image made (an image
    that was filtered or failed is left out: the manifest, ``GET /jobs/{id}``, says why). ``url`` is the
    image's link as the manifest has it (presigned deployed, the server's own offline); ``b64_json``
    reads each PNG with ``read_image(key)``. No ``revised_prompt``: the prompt is used as sent."""
    made = [image for image in manifest.get("images", []) if image.get("status") == "SUCCEEDED"]
    if response_format == "b64_json":
        total = sum(int(image.get("size_bytes") or 0) for image in made) * 4 // 3
        if total > MAX_B64_RESPONSE_BYTES:
            raise OpenAIError(
                400,
                f"the {len(made)} images are {total / 1e6:.1f} MB as base64, more than this API can "
                f"answer ({MAX_B64_RESPONSE_BYTES / 1e6:.0f} MB); they are stored: GET /jobs/{job_id} "
                "has their URLs, or ask with response_format url or a smaller n",
                param="response_format",
                code="response_too_large",
                headers={JOB_ID_HEADER: job_id, SHOULD_RETRY_HEADER: "false"},
            )
        data = [{"b64_json": base64.b64encode(read_image(image["key"])).decode("ascii")} for image in made]
    else:
        data = [{"url": image["url"]} for image in made]
    return {"created": int(now()), "data": data}

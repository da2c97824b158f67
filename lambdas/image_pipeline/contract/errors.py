"""Named errors, and how to read the errors of others.

The class name of an exception raised by a handler becomes the Step Functions error name
(``errorType`` of the Lambda error payload), so these names are part of the public contract:
console and event runs fail with them, and the API maps them to HTTP status codes.
:func:`cause_message` reads the message back out of a Step Functions cause; :func:`is_not_found`
tells an S3 "no such object" from other S3 errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


@dataclass(frozen=True)
class FieldError:
    """One problem with one request field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ImageGenError(Exception):
    """Base class of every named error of the workflow."""


class InvalidRequest(ImageGenError):
    """The request cannot be served; the message names each field to change."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("Invalid request: " + "; ".join(str(e) for e in errors))


class AllImagesFiltered(ImageGenError):
    """Every image of the request was blocked by the model's content filter."""


class ImagesThrottled(ImageGenError):
    """No image was generated and every failure was throttling by Bedrock, after retries."""


class ImagesFailed(ImageGenError):
    """No image was generated (model or storage errors); the manifest lists each reason."""


class SpendLimitExceeded(ImageGenError):
    """The request's estimated cost would take its caller past its daily spend limit
    (``core/spend.py``); the message says how much is left and when the limit resets (``resets_at``,
    the next midnight UTC). Nothing was started."""

    def __init__(self, message: str, *, resets_at: datetime | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


# Per-image errors. Raised inside a Map iteration; the transient ones are retried by the state
# machine, and all of them are caught there and recorded in the manifest as the image's reason.


class ModelThrottled(ImageGenError):
    """Bedrock throttled the call (ThrottlingException / ServiceQuotaExceededException). Transient."""


class ModelTimeout(ImageGenError):
    """The model did not answer in time (ModelTimeoutException or a read timeout). Transient."""


class ModelUnavailable(ImageGenError):
    """Bedrock or the model failed (5xx, ModelNotReady, ModelError). Transient."""


class ModelRejected(ImageGenError):
    """Bedrock refused the request body (ValidationException that is not a content filter)."""


class ModelAccessDenied(ImageGenError):
    """The account has no access to the model, or the role lacks bedrock:InvokeModel."""


class ModelResponseInvalid(ImageGenError):
    """The model answered, but not with a decodable image."""


class StorageError(ImageGenError):
    """The image could not be written to, or found in, S3."""


#: Per-image error name -> manifest reason code.
REASON_CODES: dict[str, str] = {
    "ModelThrottled": "THROTTLED",
    "ModelTimeout": "MODEL_TIMEOUT",
    "ModelUnavailable": "MODEL_UNAVAILABLE",
    "ModelRejected": "MODEL_REJECTED_REQUEST",
    "ModelAccessDenied": "MODEL_ACCESS_DENIED",
    "ModelResponseInvalid": "MODEL_RESPONSE_INVALID",
    "StorageError": "STORAGE_ERROR",
    "States.Timeout": "TASK_TIMEOUT",
    "States.TaskFailed": "TASK_FAILED",
}

#: Reason codes of content-filter outcomes (never retried).
FILTER_REASONS = frozenset({"CONTENT_FILTERED_INPUT", "CONTENT_FILTERED_OUTPUT"})


def reason_code_for_error(error_name: str) -> str:
    """Map a Step Functions error name caught in a Map iteration to a stable reason code."""
    if error_name in REASON_CODES:
        return REASON_CODES[error_name]
    if error_name.startswith("Lambda."):
        return "LAMBDA_ERROR"
    return "INTERNAL_ERROR"


def cause_message(cause: Any) -> str:
    """The message of a Step Functions error cause: a Lambda error payload's ``errorMessage`` (or
    ``message``), or the cause's text itself; empty when there is no cause."""
    if not cause or not isinstance(cause, str):
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict):
        return str(parsed.get("errorMessage") or parsed.get("message") or cause)
    return cause


#: Error codes of an S3 call on a key that does not exist (HeadObject answers a bare 404).
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def is_not_found(error: ClientError) -> bool:
    """Whether an S3 ``ClientError`` says the object does not exist (rather than that the call failed)."""
    return error.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES

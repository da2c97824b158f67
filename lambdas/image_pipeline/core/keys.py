"""S3 key naming. One folder per caller and request id, so keys never collide.

``<namespace>/<output_folder>/<request_id>/<file_name_prefix>-<index>-<seed>.png`` and
``manifest.json`` beside the images. The namespace is the caller's
(:attr:`image_pipeline.core.tenancy.Caller.namespace`, 12 hex characters): everything a caller stored is
under ``<namespace>/``, which a bucket listing, a lifecycle rule or an IAM condition can name, and no
caller's ``output_folder`` reaches another's. The request id is the job id (the execution name without
its namespace), unique per caller. Seed 001 named files after ``time.time()``, which collides when four
threads start in the same tick; here uniqueness comes from the request id and the image index.

Batches: a JSONL file uploaded under :data:`BATCH_PREFIX` (ending in :data:`BATCH_SUFFIX`) starts a
batch, which writes under :data:`RESULTS_PREFIX` (see ``image_pipeline.core.batch``).
"""

from __future__ import annotations

import re

from image_pipeline.core.tenancy import NAMESPACE_LENGTH

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
_NAMESPACE = re.compile(rf"^[0-9a-f]{{{NAMESPACE_LENGTH}}}$")

#: Uploads under this prefix (ending in :data:`BATCH_SUFFIX`) start a batch.
BATCH_PREFIX = "batches/"
BATCH_SUFFIX = ".jsonl"
#: Each batch writes its items and manifest under ``batch-results/<batch id>/`` (never under
#: ``batches/``, so a batch's own files cannot start another batch).
RESULTS_PREFIX = "batch-results/"
#: A cancelled job's marker is ``cancellations/<execution name>`` (``image_pipeline.core.cancellation``):
#: outside every request's folder, so no listing of a caller's images meets it.
CANCELLATIONS_PREFIX = "cancellations/"


def namespace_prefix(namespace: str) -> str:
    """The folder of everything one caller stored (its requests' images and manifests), ending in '/'."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"{namespace!r} is not a caller's namespace")
    return f"{namespace}/"


def request_prefix(output_folder: str, request_id: str, *, namespace: str) -> str:
    """The folder of one request's images and manifest, ending in '/'."""
    if not _REQUEST_ID.match(request_id):
        raise ValueError(f"request id {request_id!r} is not a valid execution name")
    return f"{namespace_prefix(namespace)}{output_folder.strip('/')}/{request_id.replace(':', '-')}/"


def image_key(prefix: str, file_name_prefix: str, index: int, seed: int) -> str:
    """The key of image ``index`` of a request."""
    return f"{prefix}{file_name_prefix}-{index:02d}-{seed}.png"


def manifest_key(prefix: str) -> str:
    """The key of a request's manifest."""
    return f"{prefix}manifest.json"


def cancellation_key(execution_name: str) -> str:
    """The key of the marker that says execution ``execution_name`` was cancelled."""
    if not _REQUEST_ID.match(execution_name):
        raise ValueError(f"{execution_name!r} is not a valid execution name")
    return f"{CANCELLATIONS_PREFIX}{execution_name}"

"""S3 key naming. One folder per request id (the execution name), so keys never collide.

``<output_folder>/<request_id>/<file_name_prefix>-<index>-<seed>.png`` and ``manifest.json`` beside
the images. Seed 001 named files after ``time.time()``, which collides when four threads start in the
same tick; here uniqueness comes from the request id (unique per execution) and the image index.

Batches: a JSONL file uploaded under :data:`BATCH_PREFIX` (ending in :data:`BATCH_SUFFIX`) starts a
batch, which writes under :data:`RESULTS_PREFIX` (see ``image_pipeline.core.batch``).
"""

from __future__ import annotations

import re

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")

#: Uploads under this prefix (ending in :data:`BATCH_SUFFIX`) start a batch.
BATCH_PREFIX = "batches/"
BATCH_SUFFIX = ".jsonl"
#: Each batch writes its items and manifest under ``batch-results/<batch id>/`` (never under
#: ``batches/``, so a batch's own files cannot start another batch).
RESULTS_PREFIX = "batch-results/"


def request_prefix(output_folder: str, request_id: str) -> str:
    """The folder of one request's images and manifest, ending in '/'."""
    if not _REQUEST_ID.match(request_id):
        raise ValueError(f"request id {request_id!r} is not a valid execution name")
    return f"{output_folder.strip('/')}/{request_id.replace(':', '-')}/"


def image_key(prefix: str, file_name_prefix: str, index: int, seed: int) -> str:
    """The key of image ``index`` of a request."""
    return f"{prefix}{file_name_prefix}-{index:02d}-{seed}.png"


def manifest_key(prefix: str) -> str:
    """The key of a request's manifest."""
    return f"{prefix}manifest.json"

"""Data the jobs core and the HTTP API Lambda are both tested with."""

from __future__ import annotations

import json
from typing import Any

#: The Cause of an execution that failed because every image was filtered.
FILTERED_CAUSE = json.dumps(
    {"errorMessage": "No image was generated (CONTENT_FILTERED_INPUT x2)", "errorType": "AllImagesFiltered"}
)


def stale_manifest(bucket: str) -> dict[str, Any]:
    """A manifest as an execution returned it: one image kept, one filtered, its URL long expired."""
    return {
        "request_id": "ok-1",
        "status": "SUCCEEDED",
        "bucket": bucket,
        "prefix": "images/ok-1/",
        "requested": 2,
        "succeeded": 1,
        "filtered": 1,
        "failed": 0,
        "images": [
            {"index": 0, "key": "images/ok-1/image-00-7.png", "status": "SUCCEEDED", "url": "https://stale"},
            {"index": 1, "key": None, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"},
        ],
        "urls_expire_at": "2000-01-01T00:00:00+00:00",
    }

"""One input contract for the API, the console and EventBridge."""

from __future__ import annotations

from typing import Any

REQUEST_EVENT = "ImageGenerationRequested"


def request_from_input(raw: Any) -> Any:
    """The image request inside an execution input.

    The API and the console pass the request itself. An EventBridge rule's target passes the event's
    ``detail`` (input path ``$.detail``); a whole ``ImageGenerationRequested`` event is unwrapped too,
    so a rule configured without an input path still works.
    """
    if isinstance(raw, dict) and raw.get("detail-type") == REQUEST_EVENT and "detail" in raw:
        return raw["detail"]
    return raw

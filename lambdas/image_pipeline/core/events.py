"""The event that requests images: one name for the EventBridge rule (``stacks/events.py``), the
offline bus (``imagegen.runtime.local_api.put_request_event``) and the validate step, which unwraps a
whole event given as input (``image_pipeline.core.execution_input.read_execution_input``)."""

from __future__ import annotations

#: The ``detail-type`` of a request event; its ``detail`` is the request.
REQUEST_EVENT = "ImageGenerationRequested"

"""What a request cost, written into its manifest: the model's price for each image, and an estimate
of what the workflow around it cost (Step Functions, Lambda, S3, EventBridge), from the one price table
(``image_pipeline.models.prices``) with its date and source.

* **The model**: an image costs the table's price for its model at its quality (``<id>-premium`` where
  the table prices premium apart) when the model answered for it: ``SUCCEEDED``, or ``FILTERED`` by the
  *output* filter (the model made the image, its filter withheld it). An image refused for its prompt
  (``CONTENT_FILTERED_INPUT``), failed, or not started (``CANCELLED``) costs nothing. The table prices one
  size per model (its ``unit`` says which): other sizes are priced as that one.
* **The workflow, estimated**: Standard state transitions (``n + 5`` for ``n`` images, as
  ``benchmarks/cost.py`` counts them; retries add more, not counted here), Lambda requests and GB-seconds
  (GenerateImage at its memory for the model's measured latency plus its own work, the two other steps
  briefly), S3 requests (each image's cancellation check, PUT and HEAD, the manifest's PUT) and one
  EventBridge event. The API's own function and API Gateway requests depend on how the job was started
  and polled, and are not in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from image_pipeline.models.prices import model_price_document, price_table

#: The workflow's functions' memory (``stacks/workflow.py``: GenerateImage 512 MB, ValidateRequest one
#: vCPU for the inpaint mask check, the others the default of ``stacks/functions.py``;
#: tests/infra/test_workflow_construct.py checks they agree).
GENERATE_IMAGE_MEMORY_MB = 512
VALIDATE_REQUEST_MEMORY_MB = 1769
STEP_MEMORY_MB = 256
#: Seconds of a function's own work, beside waiting for the model (each is a few tens of milliseconds
#: offline, ``benchmarks/results/cost.json``; rounded up for a Lambda's slower CPU).
GENERATE_IMAGE_OWN_SECONDS = 0.2
VALIDATE_REQUEST_SECONDS = 0.1
BUILD_MANIFEST_SECONDS = 0.2
#: State transitions beside one per image: ValidateRequest, the Map, BuildManifest, PublishCompleted, Done.
FIXED_STATE_TRANSITIONS = 5
#: Reason codes whose image the model made (and billed) although it is not stored.
MADE_BUT_WITHHELD = frozenset({"CONTENT_FILTERED_OUTPUT"})


def model_billed(image: Mapping[str, Any]) -> bool:
    """Whether the model answered for this image (and its price applies): not for an image the prompt
    cache served (``cached``), which is a copy of an earlier one."""
    if image.get("cached"):
        return False
    return image.get("status") == "SUCCEEDED" or (
        image.get("status") == "FILTERED" and image.get("reason_code") in MADE_BUT_WITHHELD
    )


def image_cost(image: Mapping[str, Any], price: float | None) -> float | None:
    """The model's price of one image of the manifest (0 when it was not billed; None: not priced)."""
    if price is None:
        return None
    return price if model_billed(image) else 0.0


def request_cost(
    images: Sequence[Mapping[str, Any]],
    results: Mapping[int, Mapping[str, Any]],
    *,
    registry_id: str,
    quality: str | None,
) -> dict[str, Any]:
    """The manifest's ``cost``: the model's part (per image too: :func:`image_cost`) and the
    workflow's estimate, in the table's currency, with the table's reference."""
    table = price_table()
    model = model_price_document(registry_id, quality)
    price = float(model["usd_per_image"]) if model is not None else None  # type: ignore[arg-type]
    per_image = [image_cost(image, price) for image in images]
    model_usd = None if price is None else round(sum(c or 0.0 for c in per_image), 6)

    count = len(images)
    model_seconds = sum(float(r.get("model_latency_ms") or 0) for r in results.values()) / 1000
    stored = sum(image.get("status") == "SUCCEEDED" for image in images)
    gb_seconds = (
        (model_seconds + count * GENERATE_IMAGE_OWN_SECONDS) * GENERATE_IMAGE_MEMORY_MB
        + VALIDATE_REQUEST_SECONDS * VALIDATE_REQUEST_MEMORY_MB
        + BUILD_MANIFEST_SECONDS * STEP_MEMORY_MB
    ) / 1024
    workflow = {
        "step_functions": (count + FIXED_STATE_TRANSITIONS)
        * table.service("stepfunctions_standard_per_state_transition"),
        "lambda": (count + 2) * table.service("lambda_per_request")
        + gb_seconds * table.service("lambda_arm64_per_gb_second"),
        # PUT-class: each image's cancellation check (LIST) and PUT, the manifest; GET-class: the HEADs
        "s3": (count + stored + 1) * table.service("s3_put_per_request")
        + count * table.service("s3_get_per_request"),
        "eventbridge": table.service("eventbridge_custom_event"),
    }
    estimate = {name: round(value, 8) for name, value in workflow.items()}
    estimate["total"] = round(sum(workflow.values()), 8)
    total = None if model_usd is None else round(model_usd + estimate["total"], 6)
    return {
        "currency": table.currency,
        "model_usd": model_usd,
        "workflow_estimate_usd": estimate,
        "total_usd": total,
        "model_price": model,
        "prices": table.reference(),
        "note": "model: its price for each image it made (output-filtered included); workflow: an "
        "estimate (state transitions without retries, Lambda at the model's measured latency, S3, "
        "EventBridge), not the API's own calls; prices marked verify are not confirmed on an AWS page",
    }


def image_price(registry_id: str, quality: str | None) -> float | None:
    """The model's price of one image at ``quality`` (None: not priced)."""
    model = model_price_document(registry_id, quality)
    return float(model["usd_per_image"]) if model is not None else None  # type: ignore[arg-type]

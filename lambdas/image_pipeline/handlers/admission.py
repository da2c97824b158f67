"""Map branch: take a slot of the model before the call (``acquire``), give it back after (``release``).

``acquire`` raises ``NoSlot`` at once when the model's slots are all held: the state machine's Retry
on that error is the wait (core/admission.py). A branch whose job was cancelled (``DELETE /jobs/{id}``)
stops waiting at its next try: it answers ``cancelled`` without a slot, and GenerateImage records the
image ``CANCELLED`` without calling the model. Metrics per model: ``AdmissionSlotsInUse``,
``AdmissionWaitingBranches``, ``AdmissionWaitSeconds`` and ``AdmissionNoSlot``.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.contract.errors import StorageError
from image_pipeline.core import clients
from image_pipeline.core.admission import (
    DynamoSlotStore,
    NoSlot,
    Semaphore,
    acquire_unless_cancelled,
    holder_id,
    quota_of,
)
from image_pipeline.core.cancellation import is_cancelled
from image_pipeline.core.observability import log_metrics, record_admission, tracer
from image_pipeline.core.settings import get_settings

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    model = event["model"]
    holder = holder_id(event["execution_name"], event["index"])
    if not settings.admission_table:
        return {"holder": holder, "admission": "off"}
    semaphore = Semaphore(
        DynamoSlotStore(clients.admission_dynamodb(), settings.admission_table),
        settings.admission_lease_seconds,
    )
    if event["action"] == "release":
        released = semaphore.release(model, holder)
        logger.info("slot released", extra={"holder": holder, "released": released})
        return {"holder": holder, "released": released}
    limit = quota_of(model, settings.model_concurrency)

    def cancelled() -> bool:  # a marker we cannot read is no cancellation: the branch keeps waiting
        try:
            return is_cancelled(clients.s3(), settings.images_bucket, event["execution_name"])
        except StorageError:
            return False

    try:
        granted = acquire_unless_cancelled(semaphore, model, holder, limit, time.time(), cancelled=cancelled)
    except NoSlot:
        record_admission(model, waiting=semaphore.last_waiting, no_slot=True)
        raise
    if granted is None:
        logger.info("job cancelled: the branch stops waiting for a slot", extra={"holder": holder})
        return {"holder": holder, "admission": "cancelled"}
    record_admission(
        model, in_use=granted.in_use, waited_seconds=granted.waited_seconds, waiting=semaphore.last_waiting
    )
    logger.info(
        "slot taken", extra={"holder": holder, "limit": limit, "waited_seconds": granted.waited_seconds}
    )
    return {"holder": holder, "limit": limit, "reclaimed": granted.reclaimed}

"""Map branch: take a slot of the model before the call (``acquire``), give it on after (``release``).

``AcquireSlot`` invokes this with its task token and waits for it (``.waitForTaskToken``): a branch
that gets a slot at once wakes itself; one that finds none leaves a ticket in its model's queue and
this returns, the branch waiting (no polling) until a release hands it a slot and wakes it
(core/admission.py). A branch of a cancelled job is woken with ``cancelled`` and no slot; GenerateImage
then records the image ``CANCELLED`` without calling the model. ``NoSlot`` (DynamoDB throttled the take)
is retried by the state machine. Metrics per model: ``AdmissionSlotsInUse``, ``AdmissionWaitingBranches``,
``AdmissionWaitSeconds`` and ``AdmissionNoSlot``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients, time_budget
from image_pipeline.core.admission import HandOffReport, NoSlot, Ticket, holder_id, ticket_place
from image_pipeline.core.admission_runtime import AdmissionRuntime, admission_runtime, send_task_success
from image_pipeline.core.observability import log_metrics, record_admission, record_hand_off, tracer
from image_pipeline.core.settings import get_settings

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "sweep":  # the keeper's schedule (stacks/admission.py), every minute
        return _sweep(context)
    if event.get("action") == "forget":  # an execution ended without its releases (stacks/admission.py)
        return _forget(str(event["execution_name"]), context)
    model = event["model"]
    holder = holder_id(event["execution_name"], event["index"])
    token = event.get("task_token")
    runtime = admission_runtime(get_settings())
    if runtime is None:
        off: dict[str, Any] = {"holder": holder, "admission": "off"}
        if token:  # the branch waits for its token: end the wait at once
            send_task_success(clients.admission_stepfunctions(), token, off)
        return off
    semaphore, limit, now = runtime.semaphore, runtime.limit(model), time.time()
    if event["action"] == "release":
        released = semaphore.release(
            model, holder, limit, now, notify=runtime.notify, cancelled=runtime.cancelled
        )
        record_hand_off(model, semaphore.report)
        logger.info(
            "slot released",
            extra={"holder": holder, "released": released, "woken": len(semaphore.report.woken)},
        )
        return {"holder": holder, "released": released}
    if not token:
        raise ValueError("AcquireSlot must pass its task token ($$.Task.Token) as task_token")
    ticket = Ticket(holder, token, ticket_place(event.get("execution_start"), holder, now), now)
    try:
        granted = semaphore.acquire(
            model, ticket, limit, now, notify=runtime.notify, cancelled=runtime.cancelled
        )
    except NoSlot:
        record_admission(model, no_slot=True)
        raise
    record_hand_off(model, semaphore.report)
    if granted is None:
        record_admission(model, waiting=runtime.waiting(model))
        logger.info("no slot: the branch waits in the queue", extra={"holder": holder, "limit": limit})
        return {"holder": holder, "admission": "queued"}
    answer: dict[str, Any] = {"holder": holder, "admission": "granted", "limit": limit, "waited_seconds": 0.0}
    if not runtime.notify(token, answer):  # the branch stopped waiting meanwhile: the slot goes on
        semaphore.release(  # the lease this take wrote only: a retry of the branch may have renewed it
            model,
            holder,
            limit,
            now,
            notify=runtime.notify,
            cancelled=runtime.cancelled,
            expected=granted.expires,
        )
        return {"holder": holder, "admission": "abandoned"}
    record_admission(model, in_use=granted.in_use, waited_seconds=0.0)
    logger.info("slot taken", extra={"holder": holder, "limit": limit, "reclaimed": granted.reclaimed})
    return answer


def _models_in_time(
    runtime: AdmissionRuntime, context: LambdaContext, bound: float, work: str
) -> Iterator[str]:
    """The models the keeper's round or a forget goes over, as long as the invocation has time left for
    one model's worst case (``bound``); the rest is left to the next keeper round (logged)."""
    for model in runtime.models():
        if context.get_remaining_time_in_millis() / 1000 < bound:
            logger.warning(f"{work} cut short: the next keeper round goes on", extra={"next_model": model})
            return
        yield model


def _sweep(context: LambdaContext) -> dict[str, Any]:
    """Every model's keeper round: expired leases reclaimed for the queue, cancelled jobs' tickets woken;
    then the model's slots in use and branches waiting, recorded once a minute whether or not anything
    moved (a hand-over keeps the count, so the takes alone would leave the dashboard blank when busy)."""
    runtime = admission_runtime(get_settings())
    if runtime is None:
        return {"swept": []}
    swept = []
    semaphore = runtime.semaphore
    for model in _models_in_time(runtime, context, time_budget.admission_sweep_bound(), "keeper round"):
        if not semaphore.store.read(model).leases and not semaphore.store.oldest(model, 1):
            continue  # no slot held, nobody waiting: nothing to keep (two reads)
        semaphore.report = HandOffReport()
        semaphore.sweep(
            model, runtime.limit(model), time.time(), notify=runtime.notify, cancelled=runtime.cancelled
        )
        record_hand_off(model, semaphore.report)
        in_use = semaphore.store.read(model).in_use
        waiting = runtime.waiting(model)
        if in_use or waiting:
            record_admission(model, in_use=in_use, waiting=waiting)
        if semaphore.report.woken or semaphore.report.cancelled:
            logger.info(
                "keeper round",
                extra={
                    "model": model,
                    "woken": len(semaphore.report.woken),
                    "cancelled": semaphore.report.cancelled,
                },
            )
        swept.append({"model": model, "in_use": in_use, "waiting": waiting})
    return {"swept": swept}


def _forget(execution: str, context: LambdaContext) -> dict[str, Any]:
    """An execution stopped, timed out or failed: its slots back to the queue now, its tickets dropped."""
    runtime = admission_runtime(get_settings())
    if runtime is None:
        return {"forgotten": {}}
    semaphore, freed = runtime.semaphore, {}
    for model in _models_in_time(runtime, context, time_budget.admission_forget_bound(), "forgetting"):
        count = semaphore.forget(
            model,
            execution,
            runtime.limit(model),
            time.time(),
            notify=runtime.notify,
            cancelled=runtime.cancelled,
        )
        if count:
            freed[model] = count
    logger.info("ended execution forgotten", extra={"execution": execution, "slots_freed": freed})
    return {"forgotten": freed}

"""Aggregation: the manifest of a request, written beside its images and returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.contract.errors import AllImagesFiltered, ImagesFailed, ImagesThrottled
from image_pipeline.core import clients
from image_pipeline.core.lasting_links import deployment_minter
from image_pipeline.core.manifest import build_manifest
from image_pipeline.core.observability import (
    log_metrics,
    outcomes_of_failed_request,
    outcomes_of_manifest,
    record_outcomes,
    tracer,
)
from image_pipeline.core.settings import get_settings
from image_pipeline.core.spend import settle_manifest

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(request_id=event.get("request_id"))
    settings = get_settings()
    try:
        manifest = build_manifest(
            event,
            s3=clients.s3(),
            bucket=settings.images_bucket,
            expires_in=settings.presign_expiry_seconds,
            on_stored=lambda stored: _settle_spend(event, stored),
            links=_lasting_links(event.get("caller_namespace")),
        )
    except (AllImagesFiltered, ImagesThrottled, ImagesFailed) as exc:
        record_outcomes(outcomes_of_failed_request(event), event["model"])
        _index_outcome(event, {"error": type(exc).__name__, "message": str(exc)})
        raise
    record_outcomes(outcomes_of_manifest(manifest), event["model"])
    _index_outcome(event, manifest)
    logger.info(
        "manifest built",
        extra={k: manifest[k] for k in ("status", "requested", "succeeded", "filtered", "failed")},
    )
    return manifest


def _settle_spend(event: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Settle the job's reservation on its caller's daily ledger to what the manifest says it cost. A
    failure is logged, never raised: the images are made; the reservation (the estimate) then stays
    counted for the day, which errs on the caller's side of the ceiling, not the account's."""
    ledger = clients.spend_ledger()
    if ledger is None:
        return
    try:
        settle_manifest(ledger, event, manifest)
    except (ClientError, BotoCoreError):
        logger.exception("could not settle the job's spend; its estimate stays counted for the day")


def _lasting_links(namespace: str | None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What gives the manifest's images their lasting links (none when the deployment mints none here);
    a link secret that cannot be read is logged, and the manifest is stored without links."""
    try:
        minter = deployment_minter(namespace)
    except Exception:
        logger.warning("no lasting links in the manifest: the link secret could not be read", exc_info=True)
        return None
    return minter.with_links if minter is not None else None


def _index_outcome(event: dict[str, Any], outcome: dict[str, Any]) -> None:
    """The job's final status in the image index (a failed write is logged and counted, not raised)."""
    index = clients.image_index()
    if index is not None:
        index.finish_job(event, outcome)

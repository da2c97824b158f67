"""First state: check the request for its model and plan one branch per image."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core.events import request_from_input
from image_pipeline.core.observability import tracer
from image_pipeline.core.planning import check_request, plan
from image_pipeline.core.settings import get_settings

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_id = str(event["execution_name"])
    logger.append_keys(request_id=request_id)
    planned = plan(check_request(request_from_input(event.get("input")), get_settings()), request_id)
    logger.info("request planned", extra={"model": planned["model"], "count": len(planned["images"])})
    logger.debug("prompt", extra={"prompt": planned["request"]["prompt"]})
    return planned

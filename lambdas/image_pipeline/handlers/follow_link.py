"""``GET /links/{token}``: a lasting link followed (``core/lasting_links.py``).

No API key: the token's signature is the authorization, as a presigned URL's is (a browser's
``<img src>`` sends no header). A valid link answers ``302`` to a presigned URL of its image made now
(``?download=1``: as an attachment); a changed, made-up or foreign-namespace token is 403
``InvalidLink``, an expired one 403 ``LinkExpired``, an image no longer stored 404 ``NotFound``, each
as ``{error, message}``. The secret is read from Secrets Manager once per container.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.lasting_links import LinkRefused, deployment_secret, follow_link, link_settings
from image_pipeline.core.settings import get_settings

logger = Logger()


def _answer(status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
        "body": json.dumps(body) if body is not None else "",
    }


# log_event=False: the token is a bearer credential (like a presigned URL); it is never logged.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True, log_event=False
)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    token = str((event.get("pathParameters") or {}).get("token") or "")
    query = event.get("queryStringParameters") or {}
    settings = link_settings()
    try:
        location = follow_link(
            token,
            secret=deployment_secret(),
            s3=clients.s3(),
            bucket=get_settings().images_bucket,
            download=query.get("download") == "1",
            redirect_expiry_seconds=settings.redirect_expiry_seconds,
        )
    except LinkRefused as exc:
        logger.info("link refused", extra={"status": exc.status, "error": exc.error})
        return _answer(exc.status, exc.body())
    logger.info("link followed")
    return _answer(302, None, {"Location": location})

"""The Lambda authorizer of the OpenAI-compatible API (``POST /v1/images/generations``): it hands the
SDK's ``Authorization: Bearer <key>`` to API Gateway as the API key.

That API's key source is ``AUTHORIZER``: API Gateway takes the key from this function's
``usageIdentifierKey`` and checks it against the usage plan, as it checks ``x-api-key`` on the main API
(an unknown or disabled key is refused by API Gateway, 403 ``INVALID_API_KEY``, answered 401 in
OpenAI's shape). So this function decides nothing about the key: it reads it, and allows the API's
methods for it (one policy for the cache's whole TTL, so it names every method of the stage). A
request without a Bearer key is 401 (``Unauthorized``, API Gateway's own answer). The identity the
HTTP API function reads is still ``requestContext.identity.apiKeyId``, the key API Gateway matched,
never anything this function returns (``principalId`` is a constant). docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

from image_pipeline.core.openai_images import bearer_key

#: What API Gateway answers 401 for: the exact message of a Lambda authorizer's error.
UNAUTHORIZED = "Unauthorized"


def stage_methods_arn(method_arn: str) -> str:
    """``arn:...:<api id>/<stage>/<verb>/<path>`` -> ``arn:...:<api id>/<stage>/*/*``."""
    prefix, _, path = method_arn.partition(":execute-api:")
    head = path.split("/")[:2]  # region:account:api-id, stage
    return f"{prefix}:execute-api:{'/'.join(head)}/*/*"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    key = bearer_key(headers.get("authorization"))
    if key is None:
        raise Exception(UNAUTHORIZED)
    return {
        "principalId": "apiKey",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": stage_methods_arn(str(event["methodArn"])),
                }
            ],
        },
        "usageIdentifierKey": key,
    }

"""Lasting links offline: ``GET /links/{token}`` of the local server, as deployed.

The same token format as the deployed API (:mod:`image_pipeline.core.lasting_links`), signed with the
server's secret (:class:`~imagegen.runtime.local_auth.LinkSigner`, new at each start: a restarted
server's links are refused, as a deployment's would be after its secret changed). A manifest's images
get ``link`` and ``download_link`` (:func:`with_lasting_links`); following one is a 302 to the
image's signed ``/files`` URL, made then and short (as deployed: a presigned URL); a changed or
expired token is 403 (``InvalidLink``, ``LinkExpired``), an image no longer stored 404 ``NotFound``,
each ``{error, message}``. No ``x-api-key``: the signature is the authorization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from image_pipeline.contract.errors import is_not_found
from image_pipeline.core.lasting_links import LinkRefused

from imagegen.runtime.local_auth import LinkSigner

#: How long a lasting link lasts by default: ``imagegen:imageExpirationDays`` of cdk.json (30 days).
DEFAULT_LINK_LIFETIME_SECONDS = 30 * 24 * 3600
#: How long the signed ``/files`` URL a link redirects to lasts (it is followed at once).
REDIRECT_EXPIRY_SECONDS = 300


def with_lasting_links(
    manifest: dict[str, Any], base_url: str, signer: LinkSigner, lifetime_seconds: int
) -> dict[str, Any]:
    """``manifest`` with ``link``/``download_link`` to each image under its caller's namespace
    (``caller_namespace``; a manifest that names none is returned as it is)."""
    namespace = manifest.get("caller_namespace")
    if not namespace:
        return manifest
    return signer.minter(str(namespace), lifetime_seconds, base_url.rstrip("/") + "/").with_links(manifest)


def add_link_routes(
    app: FastAPI, *, signer: LinkSigner, exists: Callable[[str], bool], blocking: Callable[..., Any]
) -> None:
    """``GET /links/{token}`` on ``app``; ``exists(key)`` says whether an image is still stored."""

    @app.get("/links/{token}", summary="A lasting link to one image: 302 to it (no API key: it is signed)")
    async def follow_link(token: str, download: str | None = None) -> Response:
        try:
            claims = signer.claims(token)
        except LinkRefused as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers={"Cache-Control": "no-store"})
        if not await blocking(exists, claims.key):
            refused = LinkRefused(404, "NotFound", "this image is no longer stored")
            return JSONResponse(refused.body(), status_code=404, headers={"Cache-Control": "no-store"})
        target = f"/files/{quote(claims.key)}?{signer.query(claims.key, REDIRECT_EXPIRY_SECONDS)}"
        if download == "1":
            target += "&download=1"
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})


def object_exists(s3: Any, bucket: str) -> Callable[[str], bool]:
    """``exists(key)`` over an S3 client: HeadObject, a 404 is False."""

    def exists(key: str) -> bool:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    return exists

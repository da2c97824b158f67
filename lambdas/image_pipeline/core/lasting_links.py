"""Links that last as long as the images: ``/links/<token>``, an HMAC-signed token, not a presigned URL.

A URL presigned by the Lambda role dies with the role's session token (hours), whatever its
``ExpiresIn``. A lasting link names the image instead and is signed with a secret of the deployment
(generated and kept by AWS Secrets Manager; offline, the local server's own): whoever holds it may read
that one image until the link's expiry, like a presigned URL, and following it answers ``302`` to a
presigned URL made at that moment (deployed: ``handlers/follow_link.py``; offline: the local server).

The token is ``<payload>.<signature>``, both base64url without padding: the payload is
``v1\\n<expires, Unix seconds>\\n<namespace>\\n<key>`` and the signature HMAC-SHA256 of the payload's
text with the secret. A link is minted only for a key under the caller's own namespace
(:meth:`LinkMinter.mint`), and a token whose key is not under the namespace it was signed for is
refused like a tampered one, so a link can never reach outside the namespace of the caller it was
minted for. Refusals are :class:`LinkRefused` (403 tampered/foreign, 403 expired), named as every
other error of the API (``{error, message}``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from image_pipeline.contract.errors import is_not_found
from image_pipeline.core.manifest import attachment
from image_pipeline.core.settings import model_from_environ, model_to_environ

VERSION = "v1"
#: The route a link's token is appended to (relative to the API's base URL).
LINK_ROUTE = "links/"
#: The longest a link may last: ten years, the longest ``imagegen:imageExpirationDays``.
MAX_LINK_LIFETIME_SECONDS = 3650 * 24 * 3600
#: The shortest secret accepted (Secrets Manager generates 64 characters).
MIN_SECRET_BYTES = 32
#: A query parameter of a link that asks for the image as an attachment (``download_link``).
DOWNLOAD_QUERY = "download=1"


class LinkRefused(Exception):
    """A link that is not honoured: HTTP ``status``, a named ``error`` and a ``message``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


@dataclass(frozen=True)
class LinkClaims:
    """What a valid token says: the image's key, the namespace it was minted for, its expiry."""

    key: str
    namespace: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def sign_token(secret: bytes, *, key: str, namespace: str, expires: int) -> str:
    """The token of a link to ``key`` for the caller of ``namespace``, valid until ``expires``."""
    if not key.startswith(f"{namespace}/"):
        raise ValueError(f"{key!r} is not under the namespace {namespace!r}")
    payload = _b64(f"{VERSION}\n{int(expires)}\n{namespace}\n{key}".encode())
    return f"{payload}.{_b64(_mac(secret, payload))}"


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> LinkClaims:
    """The claims of ``token``, or :class:`LinkRefused`: 403 ``InvalidLink`` when it was not signed
    with ``secret`` (tampered, truncated, made up) or names a key outside its namespace, 403
    ``LinkExpired`` after its expiry. The signature is checked first, in constant time."""
    invalid = LinkRefused(403, "InvalidLink", "this link is not valid: it was changed or never issued")
    payload, sep, signature = token.partition(".")
    if not sep or not payload or not signature:
        raise invalid
    try:
        given = _unb64(signature)
        text = _unb64(payload).decode()
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(_mac(secret, payload), given):
        raise invalid
    version, expires_text, namespace, key = [*text.split("\n", 3), "", "", ""][:4]
    if (
        version != VERSION
        or not expires_text.isdigit()
        or not namespace
        or not key.startswith(f"{namespace}/")
    ):
        raise invalid
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        when = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
        raise LinkRefused(403, "LinkExpired", f"this link expired at {when}; ask the job again for a new one")
    return LinkClaims(key=key, namespace=namespace, expires=expires)


@dataclass(frozen=True)
class LinkMinter:
    """Mints the lasting links of one caller's images: ``<base_url>links/<token>``.

    :param secret: the deployment's link secret.
    :param lifetime_seconds: how long a link lasts from when it is minted.
    :param base_url: the API's base URL, ending in ``/`` (relative links: ``""``).
    :param namespace: the caller's namespace; images under any other are given no link.
    :param clock: the time now, in Unix seconds (tests pass their own).
    """

    secret: bytes
    lifetime_seconds: int
    base_url: str
    namespace: str
    clock: Callable[[], float] = time.time

    def expires(self) -> int:
        return int(self.clock()) + self.lifetime_seconds

    def mint(self, key: str, *, expires: int | None = None) -> str | None:
        """The link of ``key``, or None when ``key`` is not under the caller's namespace."""
        if not key.startswith(f"{self.namespace}/"):
            return None
        token = sign_token(self.secret, key=key, namespace=self.namespace, expires=expires or self.expires())
        return f"{self.base_url}{LINK_ROUTE}{token}"

    def with_links(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``manifest`` whose stored images (those of this caller) carry ``link`` (to show the
        image) and ``download_link`` (the same with ``?download=1``: saved as an attachment), and
        ``links_expire_at``; ``url`` and ``download_url`` are left as they are."""
        expires = self.expires()
        images = []
        for image in manifest.get("images") or []:
            image = dict(image)
            link = self.mint(image["key"], expires=expires) if image.get("key") else None
            if link:
                image["link"] = link
                image["download_link"] = f"{link}?{DOWNLOAD_QUERY}"
            images.append(image)
        when = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
        return {**manifest, "images": images, "links_expire_at": when}


class LinkSettings(BaseModel):
    """The link settings of a function that mints or follows links (read once per container)."""

    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "secret_arn": "LINKS_SECRET_ARN",
        "lifetime_seconds": "LINK_LIFETIME_SECONDS",
        "redirect_expiry_seconds": "LINK_REDIRECT_EXPIRY_SECONDS",
        "base_url": "LINKS_BASE_URL",
    }

    #: The Secrets Manager secret holding the HMAC key; empty: this deployment mints no links.
    secret_arn: str = ""
    #: The API's base URL (ending in ``/``), for links minted outside an API request (the stored
    #: manifest, webhook deliveries); empty: those carry no links.
    base_url: str = ""
    lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=60, le=MAX_LINK_LIFETIME_SECONDS)
    #: How long the presigned URL a link redirects to lasts (it is followed at once).
    redirect_expiry_seconds: int = Field(default=300, ge=60, le=3600)

    @classmethod
    def from_environ(cls, environ: Any = None) -> LinkSettings:
        return model_from_environ(cls, cls.ENVIRONMENT, environ, "links")

    def to_environment(self) -> dict[str, str]:
        return model_to_environ(self, self.ENVIRONMENT)


def secret_bytes(secret_string: str) -> bytes:
    """The HMAC key of a secret's ``SecretString``; a ValueError when it is too short to be one."""
    data = secret_string.encode()
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"the link secret has {len(data)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return data


def read_secret(secretsmanager: Any, secret_arn: str) -> bytes:
    """The link secret, read from Secrets Manager (``GetSecretValue``)."""
    return secret_bytes(secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"])


def follow_link(
    token: str,
    *,
    secret: bytes,
    s3: Any,
    bucket: str,
    download: bool,
    redirect_expiry_seconds: int,
    now: float | None = None,
) -> str:
    """Where a valid link leads: a presigned GET URL of its image made now (with
    ``Content-Disposition: attachment`` when ``download``). :class:`LinkRefused` 403 for a token that
    is not valid (:func:`verify_token`), 404 ``NotFound`` when the image is gone (it expired from the
    bucket, or was deleted)."""
    claims = verify_token(secret, token, now=now)
    try:
        s3.head_object(Bucket=bucket, Key=claims.key)
    except ClientError as exc:
        if is_not_found(exc):
            raise LinkRefused(404, "NotFound", "this image is no longer stored") from None
        raise
    params: dict[str, str] = {"Bucket": bucket, "Key": claims.key}
    if download:
        params["ResponseContentDisposition"] = attachment(claims.key)
    return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=redirect_expiry_seconds))


@cache
def link_settings() -> LinkSettings:
    """This container's link settings (``link_settings.cache_clear()`` after changing the environment)."""
    return LinkSettings.from_environ()


@cache
def deployment_secret() -> bytes:
    """The deployment's link secret, read once per container (``deployment_secret.cache_clear()``)."""
    return read_secret(boto3.client("secretsmanager"), link_settings().secret_arn)


def deployment_minter(namespace: str | None) -> LinkMinter | None:
    """A minter of this deployment's links to ``namespace``'s images, for code that runs outside an API
    request (the manifest step, webhook deliveries): ``LINKS_BASE_URL`` is then the API's base URL.
    None when the function mints no links (no secret or base URL) or no namespace is given."""
    settings = link_settings()
    if not (settings.secret_arn and settings.base_url and namespace):
        return None
    return LinkMinter(
        secret=deployment_secret(),
        lifetime_seconds=settings.lifetime_seconds,
        base_url=settings.base_url,
        namespace=namespace,
    )

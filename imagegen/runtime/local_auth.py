"""Who calls the local server, and the links it hands out: the offline side of tenancy.

* :class:`ApiKeys` is ``imagegen serve --api-key NAME=SECRET`` (repeatable). With keys, every API
  route needs ``x-api-key``: no key or an unknown one is 401 ``Unauthorized``, and each key is its own
  caller, ``Caller("apiKey", NAME)``: the key's *name* plays the part of the API key's id that API
  Gateway puts in the request context deployed (the secret never leaves this module, and is never a
  namespace). Without keys the server stays open, and everyone who reaches it is one caller
  (:func:`image_pipeline.core.tenancy.anonymous_caller`).
* :class:`LinkSigner` signs the ``/files/<key>`` links the server puts in manifests, as S3 signs a
  presigned URL: a browser's ``<img src>`` cannot send ``x-api-key``, so the link itself carries the
  right to read one key until it expires, and a link to another key cannot be made without the
  server's secret (new at each start).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from image_pipeline.core.jobs import ApiError
from image_pipeline.core.lasting_links import LinkClaims, LinkMinter, verify_token
from image_pipeline.core.tenancy import Caller, anonymous_caller

API_KEY_HEADER = "x-api-key"
#: A key's name: what the caller is called (and hashed into its namespace).
KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The shortest secret accepted (API Gateway's generated keys have 40 characters, its minimum is 20).
MIN_SECRET_LENGTH = 8


def parse_api_keys(options: Iterable[str]) -> dict[str, str]:
    """``NAME=SECRET`` options -> {name: secret}; a ValueError says which option is wrong and why."""
    keys: dict[str, str] = {}
    for option in options:
        name, sep, secret = option.partition("=")
        if not sep or not KEY_NAME.match(name):
            raise ValueError(
                f"--api-key {option.split('=', 1)[0]!r}...: write NAME=SECRET, NAME of letters, digits, "
                "'.', '_' or '-' (at most 64)"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"--api-key {name}=...: the secret needs at least {MIN_SECRET_LENGTH} characters"
            )
        if name in keys:
            raise ValueError(f"--api-key {name}: given twice; give each name once")
        if secret in keys.values():
            raise ValueError(f"--api-key {name}: its secret is another key's; give each key its own")
        keys[name] = secret
    return keys


@dataclass(frozen=True)
class ApiKeys:
    """The keys of a local server (name -> secret); none: an open server with one anonymous caller."""

    secrets: Mapping[str, str] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        return bool(self.secrets)

    def caller(self, presented: str | None) -> Caller:
        """The caller presenting ``presented`` (the ``x-api-key`` header); 401 when keys are required
        and it is missing or no key's secret. Every secret is compared, in constant time each."""
        if not self.required:
            return anonymous_caller()
        if not presented:
            raise ApiError(401, "Unauthorized", f"this server needs an API key: send it in {API_KEY_HEADER}")
        found = None
        for name, secret in self.secrets.items():
            if hmac.compare_digest(secret.encode(), presented.encode()):
                found = name
        if found is None:
            raise ApiError(401, "Unauthorized", f"the {API_KEY_HEADER} is not a key of this server")
        return Caller("apiKey", found)


class LinkSigner:
    """Signs and checks ``/files/<key>`` links: ``expires`` (Unix time) and an HMAC-SHA256 of the key
    and that time, with a secret of this server; and the lasting ``/links/<token>`` links, in the
    deployed API's token format (:mod:`image_pipeline.core.lasting_links`), with the same secret.
    ``clock`` is the time now in Unix seconds (tests pass their own to see links expire)."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.clock = clock

    def minter(self, namespace: str, lifetime_seconds: int, base_url: str) -> LinkMinter:
        """Mints lasting links to the images of ``namespace`` for ``lifetime_seconds``."""
        return LinkMinter(self._secret, lifetime_seconds, base_url, namespace, self.clock)

    def claims(self, token: str) -> LinkClaims:
        """What a lasting link's token says; :class:`LinkRefused` (403) when changed or expired."""
        return verify_token(self._secret, token, now=self.clock())

    def _signature(self, key: str, expires: int) -> str:
        message = f"{expires}\n{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def query(self, key: str, expires_in: int, now: float | None = None) -> str:
        """The query string that lets its holder read ``key`` for ``expires_in`` seconds."""
        expires = int((now if now is not None else self.clock()) + expires_in)
        return f"expires={expires}&signature={self._signature(key, expires)}"

    def valid(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        """Whether ``signature`` was made by :meth:`query` for ``key`` and has not expired."""
        if expires < (now if now is not None else self.clock()):
            return False
        return hmac.compare_digest(self._signature(key, expires), signature)

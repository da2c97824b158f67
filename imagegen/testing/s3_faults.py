"""Fault injection for S3, offline: make the handlers' S3 calls fail the way S3 fails.

The handlers reach S3 through a boto3 client made from boto3's default session (cached in
``image_pipeline.core.clients``). :func:`s3_faults` registers hooks on that session's event system (a
documented botocore extension point, as the offline engine's Lambda router does), recreates the cached
clients so that they carry the hooks, and removes both on exit:

* ``when="before"`` (default) answers a matching call with an S3 error *instead of* sending it:
  ``503 SlowDown`` (throttling), ``500 InternalError``, ... The hook is ``before-send``, which runs
  inside botocore's retry loop, so the client's ``standard`` retries (full-jitter backoff, bounded
  attempts, retry quota) see the error exactly as they would see S3's. Nothing is written.
* ``when="after"`` lets the call succeed (the object *is* written), then raises the error to the
  caller: an acknowledgement lost on the way back. botocore does not retry it (the call completed);
  the caller sees a ``ClientError``. The manifest step must find and keep such an image.

A rule matches an operation (``PutObject`` by default) and a regular expression searched in the
request's URL path, which ends with the object key (``r"\\.png$"``, ``r"/manifest\\.json$"``). It
fails ``times`` matching calls (``None``: every one), counted per key (``per_key=True``) or over
all keys, optionally only a ``rate`` of them (a seeded draw, repeatable)::

    with s3_faults(S3Fault(pattern=r"\\.png$", times=2)) as faults:   # 2 x 503 SlowDown per image
        result = engine.run({"prompt": "a red porsche", "count": 4})
    assert faults.injected == 8

Only clients created inside the ``with`` block carry the hooks; a rule outlives nothing: the hooks
are inert after exit even in a client that kept a copy of them.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

__all__ = ["S3_ERRORS", "S3Fault", "S3FaultInjector", "s3_faults"]

#: S3 error codes this module can answer with, and their HTTP status and message.
S3_ERRORS: dict[str, tuple[int, str]] = {
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to."),
    "AccessDenied": (403, "Access Denied"),
}

_CONTEXT_KEY = "imagegen_s3_fault_path"
_ORIGINAL_URL = "_imagegen_s3_fault_original_url"
#: Where an injected attempt points (no handler answers for it, nothing is sent: botocore has our answer).
_NOWHERE = "http://s3-fault-injection.invalid"


@dataclass(frozen=True)
class S3Fault:
    """One rule: which calls fail, how, and how often (see the module docstring)."""

    pattern: str = r".*"
    operation: str = "PutObject"
    code: str = "SlowDown"
    times: int | None = 1
    per_key: bool = True
    rate: float = 1.0
    when: Literal["before", "after"] = "before"

    def __post_init__(self) -> None:
        if self.code not in S3_ERRORS:
            raise ValueError(f"code must be one of {sorted(S3_ERRORS)}, got {self.code!r}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None (every matching call)")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be from 0 to 1")
        if self.when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        re.compile(self.pattern)

    @property
    def status(self) -> int:
        return S3_ERRORS[self.code][0]


class _RawBody:
    """The ``raw`` of a botocore response: something with ``stream()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _error_xml(code: str, message: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId>"
        "<HostId>offline-fault-injection</HostId></Error>"
    ).encode()


def _object_path(url: str) -> str:
    return unquote(urlsplit(url).path)


@dataclass
class S3FaultInjector:
    """The hooks of one :func:`s3_faults` block, and what they saw."""

    rules: tuple[S3Fault, ...]
    random_seed: int = 0
    #: Matching calls (HTTP attempts) per (operation, URL path), failed or not.
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Injected errors per (operation, URL path).
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Every attempt of a watched operation (all keys), by operation: retries included.
    calls: Counter[str] = field(default_factory=Counter)
    active: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.random_seed)
        self._hits: Counter[tuple[int, str]] = Counter()
        self._session: Any = None
        self._uid = f"imagegen-s3-faults-{uuid.uuid4().hex}"

    # -- figures -----------------------------------------------------------------------------------
    @property
    def injected(self) -> int:
        """Errors injected so far."""
        with self._lock:
            return sum(self.failures.values())

    def attempts_for(self, pattern: str, operation: str = "PutObject") -> int:
        """Matching attempts whose path matches ``pattern``."""
        regex = re.compile(pattern)
        with self._lock:
            return sum(n for (op, path), n in self.attempts.items() if op == operation and regex.search(path))

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: attempts and injected errors per operation."""
        with self._lock:
            by_op: dict[str, dict[str, int]] = {}
            for (op, _), n in self.attempts.items():
                by_op.setdefault(op, {"matching_attempts": 0, "injected": 0})["matching_attempts"] += n
            for (op, _), n in self.failures.items():
                by_op.setdefault(op, {"matching_attempts": 0, "injected": 0})["injected"] += n
            return {"calls": dict(self.calls), "by_operation": by_op}

    # -- decisions ---------------------------------------------------------------------------------
    def _decide(self, operation: str, path: str, when: str) -> S3Fault | None:
        """The rule that fails this attempt, if any (counts it)."""
        if not self.active:
            return None
        with self._lock:
            matching = [
                (number, rule)
                for number, rule in enumerate(self.rules)
                if rule.operation == operation and re.search(rule.pattern, path)
            ]
            if when == "before":
                self.calls[operation] += 1
                if matching:
                    self.attempts[(operation, path)] += 1
            chosen: S3Fault | None = None
            for number, rule in matching:
                if rule.when != when:
                    continue
                counter = (number, path if rule.per_key else "")
                if rule.times is not None and self._hits[counter] >= rule.times:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                self._hits[counter] += 1
                chosen = rule
                break
            if chosen is not None:
                self.failures[(operation, path)] += 1
            return chosen

    # -- hooks ---------------------------------------------------------------------------------------
    def _before_call(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_CONTEXT_KEY] = unquote(str(params.get("url_path", "")))

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        # botocore calls *every* before-send handler and uses the first answer; the ones registered
        # for the operation come before moto's generic one. An injected error must not reach moto
        # (it would store the object), so the attempt's URL points nowhere until the next attempt,
        # which botocore makes with the same request object: restore it first.
        original = getattr(request, _ORIGINAL_URL, None)
        if original is not None:
            request.url = original
            delattr(request, _ORIGINAL_URL)
        operation = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1]
        url = request.url
        rule = self._decide(operation, _object_path(url), "before")
        if rule is None:
            return None
        setattr(request, _ORIGINAL_URL, url)
        request.url = _NOWHERE + urlsplit(url).path
        request_id = uuid.uuid4().hex[:16].upper()
        body = _error_xml(rule.code, S3_ERRORS[rule.code][1], request_id)
        headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id}
        return AWSResponse(url, rule.status, headers, _RawBody(body))

    def _after_call(self, http_response: Any, context: dict[str, Any], **kwargs: Any) -> None:
        operation = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1]
        if getattr(http_response, "status_code", 500) >= 300:
            return
        path = str(context.get(_CONTEXT_KEY, ""))
        rule = self._decide(operation, path, "after")
        if rule is None:
            return
        status, message = S3_ERRORS[rule.code]
        raise ClientError(
            {
                "Error": {"Code": rule.code, "Message": f"{message} (offline: acknowledgement lost)"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            operation,
        )

    def install(self, session: Any) -> None:
        """Register the hooks on a boto3 session (clients created afterwards carry them)."""
        self._session = session
        events = session.events
        for operation in sorted({r.operation for r in self.rules}):
            events.register_first(
                f"before-send.s3.{operation}", self._before_send, unique_id=f"{self._uid}-s-{operation}"
            )
            if any(r.when == "after" and r.operation == operation for r in self.rules):
                events.register(
                    f"before-call.s3.{operation}", self._before_call, unique_id=f"{self._uid}-c-{operation}"
                )
                events.register(
                    f"after-call.s3.{operation}", self._after_call, unique_id=f"{self._uid}-a-{operation}"
                )
        self.active = True

    def uninstall(self) -> None:
        """Make the hooks inert and unregister them."""
        self.active = False
        if self._session is None:
            return
        events = self._session.events
        for operation in sorted({r.operation for r in self.rules}):
            events.unregister(f"before-send.s3.{operation}", unique_id=f"{self._uid}-s-{operation}")
            events.unregister(f"before-call.s3.{operation}", unique_id=f"{self._uid}-c-{operation}")
            events.unregister(f"after-call.s3.{operation}", unique_id=f"{self._uid}-a-{operation}")
        self._session = None


@contextmanager
def s3_faults(*rules: S3Fault, random_seed: int = 0, session: Any = None) -> Iterator[S3FaultInjector]:
    """Inject S3 faults into the clients made from ``session`` (default: boto3's default session)
    while the block runs; the handlers' cached clients are recreated on entry and on exit."""
    from image_pipeline.core.clients import reset_clients

    injector = S3FaultInjector(tuple(rules), random_seed=random_seed)
    injector.install(session if session is not None else boto3._get_default_session())
    reset_clients()
    try:
        yield injector
    finally:
        injector.uninstall()
        reset_clients()

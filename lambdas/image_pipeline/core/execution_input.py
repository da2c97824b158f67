"""What an execution is started with: the request, who asked for it, and (for a retry) which images.

Entry points that know the caller write an envelope, ``{"request": {...}, "caller": {...}}`` (plus
``"retry"`` for ``POST /jobs/{id}/retry``, ``"spend"`` when the entry point reserved the job's estimated
cost on its caller's daily ledger, ``core/spend.py``): the API from API Gateway's request context, the EventBridge
rule from the event's account. The Step Functions console passes a bare request (the same JSON the API
takes); its caller is the named system caller ``console`` (operators with StartExecution rights). A
request never carries its caller: ``ImageRequest`` refuses unknown fields, so ``caller`` inside a
request is an ``InvalidRequest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from image_pipeline.core.events import REQUEST_EVENT
from image_pipeline.core.tenancy import Caller, console_caller, events_caller

_ENVELOPE_KEYS = {"request", "caller"}
_OPTIONAL_KEYS = {"retry", "spend"}


@dataclass(frozen=True)
class RetryOf:
    """A retry: the job it retries and the images to make again, each ``(index, seed)``."""

    job_id: str
    images: tuple[tuple[int, int], ...]

    def to_input(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "images": [{"index": i, "seed": s} for i, s in self.images]}

    @classmethod
    def from_input(cls, value: Mapping[str, Any]) -> RetryOf:
        images = tuple((int(item["index"]), int(item["seed"])) for item in value["images"])
        return cls(str(value["job_id"]), images)


@dataclass(frozen=True)
class ExecutionInput:
    """An execution's input, read: the request as given (checked later by ``check_request``), the
    caller the entry point named, and the retry it is, if any."""

    request: Any
    caller: Caller = field(default_factory=console_caller)
    retry: RetryOf | None = None
    #: Where the entry point reserved the job's estimate (``core/spend.py``'s ``Hold.to_input``: the
    #: UTC day and micro-dollars); None: not reserved yet (the first step reserves).
    spend: Mapping[str, Any] | None = None

    def to_document(self) -> dict[str, Any]:
        """The envelope an entry point starts the execution with."""
        document: dict[str, Any] = {"request": self.request, "caller": self.caller.to_input()}
        if self.retry is not None:
            document["retry"] = self.retry.to_input()
        if self.spend is not None:
            document["spend"] = dict(self.spend)
        return document


def is_envelope(raw: Any) -> bool:
    """Whether ``raw`` is an entry point's envelope rather than a bare request."""
    return (
        isinstance(raw, Mapping)
        and raw.keys() >= _ENVELOPE_KEYS
        and raw.keys() <= _ENVELOPE_KEYS | _OPTIONAL_KEYS
        and isinstance(raw.get("caller"), Mapping)
    )


def read_execution_input(raw: Any) -> ExecutionInput:
    """Read an execution's input: an envelope, a whole request event, or a bare request (console)."""
    if isinstance(raw, Mapping) and raw.get("detail-type") == REQUEST_EVENT and "detail" in raw:
        account = str(raw.get("account") or "unknown")
        return ExecutionInput(raw["detail"], events_caller(account))
    if is_envelope(raw):
        retry = RetryOf.from_input(raw["retry"]) if raw.get("retry") else None
        spend = raw.get("spend") if isinstance(raw.get("spend"), Mapping) else None
        return ExecutionInput(raw["request"], Caller.from_input(raw["caller"]), retry, spend)
    return ExecutionInput(raw)

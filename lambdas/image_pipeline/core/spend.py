"""A daily spend ceiling per caller: a ledger of what each caller's jobs may cost, per UTC day.

Before an entry point starts a job it **reserves** the job's estimated cost (:func:`estimate_usd`,
from ``core/cost.py``'s model: each image at its model's price, plus the workflow's estimate) on the
caller's item of the day; when the job's manifest is built, the reservation is **settled** to what the
manifest says it cost (a cached, failed, input-filtered or cancelled image costs 0 there). A request
whose estimate would take the caller past its ceiling is refused before anything starts: 429 on the
API (:func:`spend_refused`, with ``Retry-After``), the named error ``SpendLimitExceeded`` in the
workflow (console, events and batches, whose first step reserves).

The ledger lives in the image index's table (``core/index_keys.py``), two kinds of item per caller,
keyed by the caller's hashed namespace (``core/tenancy.py``):

=============================  ==================================================================
``pk = SPEND#<ns>``,           ``committed``: micro-dollars settled or reserved today (one number);
``sk = DAY#<YYYY-MM-DD>``      ``settled``: micro-dollars of the jobs settled; ``hold:<execution>``:
                               a job's reservation until it settles; ``expires_at`` (the table's TTL)
``pk = SPEND#<ns>``,           ``limit_micro_usd``: this caller's ceiling, set by
``sk = LIMIT``                 ``imagegen keys create --daily-spend-usd`` (none: the deployment's)
=============================  ==================================================================

Amounts are whole micro-dollars (exact arithmetic; an estimate is rounded up). DynamoDB's condition
expressions compare an attribute with a value but do no arithmetic, so a reservation of ``e`` under a
ceiling ``L`` is the one conditional ``UpdateItem``
``attribute_not_exists(hold) AND (attribute_not_exists(committed) OR committed <= L - e)`` with
``ADD committed e SET hold = e``: DynamoDB checks and writes it atomically, so two reservations near the
ceiling cannot both pass on the same total. The hold makes a reservation idempotent by execution name
(a replayed ``POST /jobs`` with the same ``Idempotency-Key`` finds its hold and adds nothing), and a
settle is ``ADD committed (actual - hold) REMOVE hold`` conditional on the hold being what was read:
a settle done twice changes nothing the second time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from image_pipeline.contract.errors import FieldError, SpendLimitExceeded
from image_pipeline.core.cost import request_cost
from image_pipeline.core.index_keys import PK, SK, SPEND_PREFIX, TTL_ATTRIBUTE
from image_pipeline.models.registry import resolve_model

MICRO_PER_USD = 1_000_000
COMMITTED = "committed"
SETTLED = "settled"
HOLD_PREFIX = "hold:"
LIMIT_SK = "LIMIT"
LIMIT_ATTRIBUTE = "limit_micro_usd"
#: A day's item is kept this long after its day ends (then the table's TTL deletes it).
DAY_ITEM_KEPT = timedelta(days=7)


def to_micro(usd: float) -> int:
    """Whole micro-dollars of ``usd``, rounded up (an estimate never rounds down to below the cost)."""
    return max(0, math.ceil(round(usd * MICRO_PER_USD, 3)))


def usd(micro: int) -> float:
    return micro / MICRO_PER_USD


def utc_day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


def resets_at(day: str) -> datetime:
    """When the ceiling of ``day`` resets: the next midnight, UTC."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(0), tzinfo=UTC)


def estimate_usd(model: str, quality: str | None, count: int) -> float:
    """What a job of ``count`` images of ``model`` (registry or Bedrock id) may cost (``core/cost.py``):
    every image made and billed at the model's price, plus the workflow's estimate. A model without a
    price counts its workflow only (the manifest says the same: ``model_usd`` null)."""
    adapter = resolve_model(model)
    registry_id = adapter.registry_id if not isinstance(adapter, FieldError) else model
    images = [{"status": "SUCCEEDED"} for _ in range(count)]
    cost = request_cost(images, {}, registry_id=registry_id, quality=quality)
    return float(
        cost["total_usd"] if cost["total_usd"] is not None else cost["workflow_estimate_usd"]["total"]
    )


def settled_usd(manifest_cost: Mapping[str, Any]) -> float:
    """What a job cost, from its manifest's ``cost`` (its total; a model without a price: the workflow)."""
    total = manifest_cost.get("total_usd")
    if total is None:
        total = (manifest_cost.get("workflow_estimate_usd") or {}).get("total") or 0.0
    return float(total)


@dataclass(frozen=True)
class Hold:
    """A job's reservation: the caller's namespace, the UTC day it counts on, the execution it is for,
    its micro-dollars, and whether this call made it (False: it was already there)."""

    namespace: str
    day: str
    holder: str
    micro_usd: int
    created: bool = True

    def to_input(self) -> dict[str, Any]:
        """As the entry point writes it into the execution's input (``spend``): where it is settled."""
        return {"day": self.day, "micro_usd": self.micro_usd}


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: the ceiling, what is left of it today, the estimate, the day."""

    limit_micro_usd: int
    left_micro_usd: int
    estimate_micro_usd: int
    day: str

    @property
    def resets_at(self) -> datetime:
        return resets_at(self.day)

    def message(self) -> str:
        return (
            f"daily spend limit reached: this request is estimated at ${usd(self.estimate_micro_usd):.6f}, "
            f"${usd(self.left_micro_usd):.6f} of today's ${usd(self.limit_micro_usd):.2f} is left "
            f"(UTC day {self.day}); the limit resets at {self.resets_at.isoformat().replace('+00:00', 'Z')}"
        )

    def error(self) -> SpendLimitExceeded:
        return SpendLimitExceeded(self.message(), resets_at=self.resets_at)


def _condition_failed(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class SpendLedger:
    """The ledger in a DynamoDB table (the image index's), through the low-level client.

    :param default_limit_usd: the deployment's ceiling per caller and UTC day
        (``imagegen:dailySpendLimitUsd``); None: none, unless the caller has its own (``LIMIT`` item).
    :param default_model: the model of a request that names none (what its estimate is priced at).
    """

    def __init__(
        self, client: Any, table: str, *, default_limit_usd: float | None, default_model: str
    ) -> None:
        self.client = client
        self.table = table
        self.default_model = default_model
        self.default_limit_micro = None if default_limit_usd is None else to_micro(default_limit_usd)

    @staticmethod
    def _key(namespace: str, sk: str) -> dict[str, Any]:
        return {PK: {"S": f"{SPEND_PREFIX}{namespace}"}, SK: {"S": sk}}

    # -- the ceiling ------------------------------------------------------------------------------

    def own_limit_micro(self, namespace: str) -> int | None:
        """The caller's own ceiling in micro-dollars (its ``LIMIT`` item), None when it has none."""
        item = self.client.get_item(
            TableName=self.table, Key=self._key(namespace, LIMIT_SK), ConsistentRead=True
        ).get("Item")
        return int(item[LIMIT_ATTRIBUTE]["N"]) if item and LIMIT_ATTRIBUTE in item else None

    def limit_micro(self, namespace: str) -> int | None:
        """The caller's ceiling in micro-dollars: its own (``LIMIT`` item), else the deployment's."""
        own = self.own_limit_micro(namespace)
        return own if own is not None else self.default_limit_micro

    def set_limit(self, namespace: str, limit_usd: float) -> None:
        """Give the caller a ceiling of its own (``imagegen keys create --daily-spend-usd``)."""
        if not (limit_usd > 0 and math.isfinite(limit_usd)):
            raise ValueError(f"a daily spend limit is a positive number of USD, not {limit_usd!r}")
        self.client.put_item(
            TableName=self.table,
            Item={**self._key(namespace, LIMIT_SK), LIMIT_ATTRIBUTE: {"N": str(to_micro(limit_usd))}},
        )

    def forget_limit(self, namespace: str) -> None:
        """Remove the caller's own ceiling (``imagegen keys revoke``)."""
        self.client.delete_item(TableName=self.table, Key=self._key(namespace, LIMIT_SK))

    # -- reserving and settling ---------------------------------------------------------------------

    def reserve(self, namespace: str, holder: str, estimate: float, *, now: datetime) -> Hold | None:
        """Reserve ``estimate`` USD for execution ``holder`` on the caller's item of today (UTC).

        Returns the :class:`Hold` (``created`` False when ``holder`` already had one: a replay), None
        when the caller has no ceiling (nothing is recorded). Raises :class:`SpendLimitExceeded` when
        the estimate would take the caller past its ceiling.
        """
        limit = self.limit_micro(namespace)
        if limit is None:
            return None
        day = utc_day(now)
        amount = to_micro(estimate)
        hold = HOLD_PREFIX + holder
        expires = int((resets_at(day) + DAY_ITEM_KEPT).timestamp())
        room = limit - amount
        if room < 0:
            raise Refusal(limit, self._left(namespace, day, limit), amount, day).error()
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(namespace, f"DAY#{day}"),
                UpdateExpression="ADD #committed :amount SET #hold = :amount, #ttl = :expires",
                ConditionExpression="attribute_not_exists(#hold) AND "
                "(attribute_not_exists(#committed) OR #committed <= :room)",
                ExpressionAttributeNames={"#committed": COMMITTED, "#hold": hold, "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":amount": {"N": str(amount)},
                    ":room": {"N": str(room)},
                    ":expires": {"N": str(expires)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if not _condition_failed(exc):
                raise
            item = getattr(exc, "response", {}).get("Item") or {}
            if hold in item:  # this execution's reservation is already there
                return Hold(namespace, day, holder, int(item[hold]["N"]), created=False)
            committed = int(item.get(COMMITTED, {"N": "0"})["N"])
            raise Refusal(limit, max(0, limit - committed), amount, day).error() from None
        return Hold(namespace, day, holder, amount)

    def _left(self, namespace: str, day: str, limit: int) -> int:
        item = self.read_day(namespace, day)
        return max(0, limit - int(item.get(COMMITTED, 0)))

    def release(self, hold: Hold) -> bool:
        """Give back a reservation whose job did not start (settle it at 0). True when it was there."""
        return self._settle(hold.namespace, hold.day, hold.holder, hold.micro_usd, 0)

    def settle(self, namespace: str, day: str, holder: str, actual: float) -> bool:
        """Replace execution ``holder``'s reservation by what it cost (``actual`` USD). False when there
        is no reservation to settle (settled before, or made when the caller had no ceiling)."""
        key = self._key(namespace, f"DAY#{day}")
        hold = HOLD_PREFIX + holder
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item") or {}
        if hold not in item:
            return False
        return self._settle(namespace, day, holder, int(item[hold]["N"]), to_micro(actual))

    def _settle(self, namespace: str, day: str, holder: str, reserved: int, cost: int) -> bool:
        """``hold:<holder>`` (``reserved`` micro-dollars) replaced by ``cost``, if it is still there."""
        key = self._key(namespace, f"DAY#{day}")
        hold = HOLD_PREFIX + holder
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="ADD #committed :delta, #settled :cost REMOVE #hold",
                ConditionExpression="#hold = :reserved",
                ExpressionAttributeNames={"#committed": COMMITTED, "#settled": SETTLED, "#hold": hold},
                ExpressionAttributeValues={
                    ":delta": {"N": str(cost - reserved)},
                    ":cost": {"N": str(cost)},
                    ":reserved": {"N": str(reserved)},
                },
            )
        except Exception as exc:
            if _condition_failed(exc):  # settled meanwhile by another attempt
                return False
            raise
        return True

    # -- reading ---------------------------------------------------------------------------------

    def read_day(self, namespace: str, day: str) -> dict[str, int]:
        """The caller's day: ``committed``, ``settled`` and each ``hold:<execution>``, micro-dollars."""
        item = (
            self.client.get_item(
                TableName=self.table, Key=self._key(namespace, f"DAY#{day}"), ConsistentRead=True
            ).get("Item")
            or {}
        )
        return {
            name: int(value["N"])
            for name, value in item.items()
            if name in {COMMITTED, SETTLED} or name.startswith(HOLD_PREFIX)
        }


# -- the workflow's side -----------------------------------------------------------------------------


def reserve_planned(
    ledger: SpendLedger, planned: Mapping[str, Any], given: Mapping[str, Any] | None, *, now: datetime
) -> dict[str, Any] | None:
    """The first step's reservation of a planned job (``spend`` of the plan: where BuildManifest
    settles it): the one its entry point made (``given``, from the execution's input), or one made now
    for a job started without one (console, events, batches). Raises :class:`SpendLimitExceeded`."""
    if given is not None:
        return dict(given)
    request = planned.get("request") or {}
    estimate = estimate_usd(str(planned["model"]), request.get("quality"), len(planned["images"]))
    hold = ledger.reserve(str(planned["caller_namespace"]), str(planned["execution_name"]), estimate, now=now)
    return hold.to_input() if hold is not None else None


def settle_manifest(ledger: SpendLedger, state: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    """Settle a job's reservation (``state["spend"]``) to what its manifest says it cost. False when the
    job had none or it was settled before."""
    spend = state.get("spend")
    if not isinstance(spend, Mapping) or not spend.get("day"):
        return False
    return ledger.settle(
        str(state["caller_namespace"]),
        str(spend["day"]),
        str(state["execution_name"]),
        settled_usd(manifest.get("cost") or {}),
    )

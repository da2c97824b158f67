"""The image index: one DynamoDB table of every job and every image, written as they are made.

Access patterns (docs/decisions.md, "An image index in one DynamoDB table"), each one Query:

=====================================  ==========================================================
a caller's jobs, newest first          ``by-caller-jobs``: ``caller_jobs = CALLER#<ns>``, ``started = <time>#<job>``
                                       (the job's item: ``pk = JOB#<ns>#<job>``, ``sk = JOB``)
a job's images                         table: ``pk = JOB#<ns>#<job>``, ``sk = IMAGE#<index>``
a caller's images by time range        ``by-caller``: ``caller = CALLER#<ns>``, ``made = <created>#<job>#<index>``
... by model and time range            ``by-caller-model``: ``caller_model = CALLER#<ns>#MODEL#<model>``, ``made``
... by prompt words                    either of the two above, filtered on ``words`` (a string set),
                                       reading at most :data:`SEARCH_MAX_READ` items per call
an image by key                        ``by-key``: ``image_key``
the prompt cache                       ``by-cache-key``: ``cache_key = <scope>#<sha256 of the model body>``
=====================================  ==========================================================

The table's shape (keys, GSIs, TTL attribute) is plain data in ``core/index_keys.py``, which the CDK
app and the offline engine read. The GSIs are sparse: only stored (``SUCCEEDED``) images carry their keys, so a search and the cache
never see a filtered image. Items expire with their images: ``expires_at`` (epoch seconds, the table's
TTL attribute) is their creation time plus the bucket's ``imagegen:imageExpirationDays``.

A write to the index never fails a job: :meth:`ImageIndex.write` logs the failure, counts it as the
``IndexWriteFailed`` metric and returns False. The reliability audit (``imagegen.testing.audit``)
finds what such a failure left out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.contract.errors import FieldError, InvalidRequest
from image_pipeline.core.index_keys import (
    BY_CACHE_KEY,
    BY_CALLER,
    BY_CALLER_JOBS,
    BY_CALLER_MODEL,
    BY_KEY,
    JOB_SK,
    PK,
    SEARCH_PARAMETERS,
    SK,
    TTL_ATTRIBUTE,
)
from image_pipeline.core.metric_names import INDEX_WRITE_FAILED, SERVICE
from image_pipeline.core.observability import metrics
from image_pipeline.models.registry import resolve_model

logger = Logger(child=True)


#: A search returns at most this many images per call (``limit``), 20 when not given.
SEARCH_MAX_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 20
#: A search reads at most this many index items per call; a page that stops there has a next_token.
SEARCH_MAX_READ = 1000
#: A filtered job list reads at most this many of the caller's job items per call.
LIST_MAX_READ = 1000
#: A job's status in the index: RUNNING until its last step (or the list, settling it) says more.
RUNNING, SUCCEEDED, PARTIAL, CANCELLED, FAILED = "RUNNING", "SUCCEEDED", "PARTIAL", "CANCELLED", "FAILED"
#: At most this many distinct words of a prompt are indexed (and searched for).
MAX_WORDS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


# -- values -----------------------------------------------------------------------------------------


def words_of(text: str | None) -> list[str]:
    """The distinct words of ``text``, case-folded and NFKC-normalized, in order (at most
    :data:`MAX_WORDS`): what a prompt is indexed and searched by."""
    if not text:
        return []
    found = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return list(dict.fromkeys(found))[:MAX_WORDS]


def timestamp(moment: datetime) -> str:
    """The index's time: UTC, milliseconds, ``Z`` (sorts as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cache_key(model_id: str, body: Mapping[str, Any], *, namespace: str, shared: bool) -> str:
    """The prompt cache's key of one image: a hash of what the adapter sends the model (every parameter,
    the seed included) and the model id, scoped to the caller unless the deployment shares the cache."""
    canonical = json.dumps(
        {"model_id": model_id, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    scope = "shared" if shared else f"ns:{namespace}"
    return f"{scope}#{hashlib.sha256(canonical.encode()).hexdigest()}"


def _to_item(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_item(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list | tuple):
        return [_to_item(v) for v in value]
    return value


def _from_item(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_item(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_item(v) for v in value)
    return value


def job_pk(namespace: str, job_id: str) -> str:
    return f"JOB#{namespace}#{job_id}"


def image_sk(index: int) -> str:
    return f"IMAGE#{index:04d}"


def _parent_of(record: Mapping[str, Any]) -> str | None:
    """The key of the image an image was made from: a refinement's source, a cache copy's original."""
    lineage = record.get("lineage")
    source = lineage.get("source_image") if isinstance(lineage, Mapping) else None
    return str(source) if source else record.get("cached_from")


def job_list_key(item: Mapping[str, Any]) -> dict[str, Any]:
    """The ``by-caller-jobs`` key of a job item: where the next page of a list starts."""
    return {a: item[a] for a in (PK, SK, "caller_jobs", "started")}


def moment_of(text: Any) -> datetime | None:
    """An ISO 8601 time (``2026-11-30T10:00:00.123Z`` or ``+00:00``) as an aware datetime, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def execution_start(text: Any) -> datetime:
    """When an execution started (``$$.Execution.StartTime``, which ValidateRequest is given), or now."""
    return moment_of(text) or datetime.now(UTC)


def first_stored_key(images: Iterable[Mapping[str, Any]]) -> str | None:
    """The key of the stored image of the lowest index among a manifest's images (a job's thumbnail)."""
    stored = [i for i in images if i.get("status") == "SUCCEEDED" and i.get("key")]
    return str(min(stored, key=lambda i: int(i.get("index", 0)))["key"]) if stored else None


def job_outcome(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The job item's final values from a manifest (or ``{"status": "FAILED", "error", "message"}``
    when the job failed): ``CANCELLED`` for a cancelled job, else the manifest's status; the counts,
    the cost and the thumbnail's key."""
    if outcome.get("error"):
        return {
            "status": FAILED,
            "error": str(outcome["error"]),
            "error_message": str(outcome.get("message") or "")[:1000],
        }
    status = CANCELLED if outcome.get("cancelled") else str(outcome.get("status") or FAILED)
    return {
        "status": status,
        "succeeded": outcome.get("succeeded", 0),
        "filtered": outcome.get("filtered", 0),
        "failed": outcome.get("failed", 0),
        "cost_usd": (outcome.get("cost") or {}).get("total_usd"),
        "thumbnail_key": first_stored_key(outcome.get("images") or []),
    }


# -- the index ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageIndex:
    """The index table (a boto3 ``Table``) and the deployment's retention and cache sharing."""

    table: Any
    expiration_days: int = 30
    share_cache: bool = False

    def expires_at(self, moment: datetime) -> int:
        return int((moment + timedelta(days=self.expiration_days)).timestamp())

    def write(self, what: str, call: Callable[[], Any]) -> bool:
        """Run one write; a failure is logged and counted (``IndexWriteFailed``), never raised."""
        try:
            call()
        except (ClientError, BotoCoreError) as exc:
            logger.warning("index write failed", extra={"write": what, "error": str(exc)})
            if not is_metrics_disabled():
                metrics.add_dimensions(service=SERVICE)
                metrics.add_metric(name=INDEX_WRITE_FAILED, unit=MetricUnit.Count, value=1)
            return False
        return True

    # -- writes ----------------------------------------------------------------------------------
    def update_job(
        self,
        namespace: str,
        job_id: str,
        *,
        started: datetime,
        values: Mapping[str, Any],
        first: Mapping[str, Any] | None = None,
        only_while_running: bool = False,
        what: str = "job",
    ) -> bool:
        """Write the job's item (``pk = JOB#<ns>#<job>``, ``sk = JOB``) with one UpdateItem, creating it
        if it is not there: ``values`` are set, ``first`` only where the item has none yet (so the
        writers of a job, the API at its start, ValidateRequest, BuildManifest and the list's
        settling, may come in any order), the keys of the ``by-caller-jobs`` GSI and the TTL likewise.
        ``only_while_running``: only an item still ``RUNNING`` (or new) is changed, so a settled job
        is never overwritten by a late writer; that refusal is not a failure (True)."""
        keep: dict[str, Any] = {
            "kind": "job",
            "caller_namespace": namespace,
            "job_id": job_id,
            "caller_jobs": f"CALLER#{namespace}",
            "started": f"{timestamp(started)}#{job_id}",
            "started_at": started.astimezone(UTC).isoformat(timespec="seconds"),
            "created_at": timestamp(started),
            TTL_ATTRIBUTE: self.expires_at(started),
            **(first or {}),
        }
        names: dict[str, str] = {}
        data: dict[str, Any] = {}
        clauses: list[str] = []
        for n, (name, value) in enumerate(
            [*values.items(), *((k, v) for k, v in keep.items() if k not in values)]
        ):
            item_value = _to_item(value)
            if item_value is None or item_value == "":
                continue
            names[f"#a{n}"] = name
            data[f":v{n}"] = item_value
            if name in values:
                clauses.append(f"#a{n} = :v{n}")
            else:
                clauses.append(f"#a{n} = if_not_exists(#a{n}, :v{n})")
        removed = [name for name, value in values.items() if value is None]
        expression = "SET " + ", ".join(clauses)
        if removed:
            for n, name in enumerate(removed):
                names[f"#r{n}"] = name
            expression += " REMOVE " + ", ".join(f"#r{n}" for n in range(len(removed)))
        kwargs: dict[str, Any] = {
            "Key": {PK: job_pk(namespace, job_id), SK: JOB_SK},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": data,
        }
        if only_while_running:
            names["#status"] = "status"
            data[":running"] = RUNNING
            kwargs["ConditionExpression"] = "attribute_not_exists(#status) OR #status = :running"

        def call() -> None:
            try:
                self.table.update_item(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise

        return self.write(what, call)

    def job_started(
        self,
        namespace: str,
        job_id: str,
        *,
        started: datetime,
        execution_name: str,
        request: Any,
        retry_of: str | None = None,
    ) -> bool:
        """The job's item as the API starts it (``RUNNING``, the request as sent): in the list at once,
        before its first step has run. ValidateRequest completes it."""
        raw = request if isinstance(request, Mapping) else {}
        return self.update_job(
            namespace,
            job_id,
            started=started,
            values={},
            first={
                "status": RUNNING,
                "execution_name": execution_name,
                "prompt": raw.get("prompt") if isinstance(raw.get("prompt"), str) else None,
                "negative_prompt": raw.get("negative_prompt")
                if isinstance(raw.get("negative_prompt"), str)
                else None,
                "retry_of": retry_of,
            },
            what="job start",
        )

    def put_job(self, planned: Mapping[str, Any], *, started: datetime | None = None) -> bool:
        """The job's item from ValidateRequest's plan: the normalized request, model and count;
        ``RUNNING`` until BuildManifest says more (``started``: the execution's start time)."""
        request = planned["request"]
        return self.update_job(
            planned["caller_namespace"],
            planned["request_id"],
            started=started or datetime.now(UTC),
            values={
                "model": planned["model"],
                "prompt": request.get("prompt"),
                "negative_prompt": request.get("negative_prompt"),
                "parameters": {k: v for k, v in request.items() if k not in {"prompt", "negative_prompt"}},
                "count": len(planned["images"]),
                "prefix": planned["prefix"],
                "manifest_key": planned["manifest_key"],
                "retry_of": planned.get("retry_of"),
                "execution_name": planned.get("execution_name"),
            },
            first={"status": RUNNING},
            only_while_running=True,
        )

    def fail_job(
        self,
        namespace: str,
        job_id: str,
        *,
        started: datetime,
        error: str,
        message: str,
        execution_name: str | None = None,
        request: Any = None,
        stopped: datetime | None = None,
    ) -> bool:
        """A job that failed before it planned its images (ValidateRequest refused it): ``FAILED`` with
        the error's name and message, and what of the request can be read."""
        raw = request if isinstance(request, Mapping) else {}
        return self.update_job(
            namespace,
            job_id,
            started=started,
            values={
                "status": FAILED,
                "error": error,
                "error_message": message[:1000],
                "stopped_at": (stopped or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
            },
            first={
                "execution_name": execution_name,
                "prompt": raw.get("prompt") if isinstance(raw.get("prompt"), str) else None,
                "model": raw.get("model") if isinstance(raw.get("model"), str) else None,
            },
            only_while_running=True,
            what="job failure",
        )

    def finish_job(
        self, state: Mapping[str, Any], outcome: Mapping[str, Any], now: datetime | None = None
    ) -> bool:
        """The job's final status (BuildManifest): its manifest's (``CANCELLED`` for a cancelled job),
        counts, cost and first stored image, or ``FAILED`` and the error when no image was made."""
        namespace, job_id = state.get("caller_namespace"), state.get("request_id")
        if not namespace or not job_id:
            return False
        values = job_outcome(outcome)
        values["stopped_at"] = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        return self.update_job(
            str(namespace),
            str(job_id),
            started=moment_of(state.get("received_at")) or now or datetime.now(UTC),
            values=values,
            first={"model": state.get("model"), "count": len(state.get("images") or []) or None},
            what="job status",
        )

    def put_image(
        self,
        event: Mapping[str, Any],
        record: Mapping[str, Any],
        *,
        cost_usd: float | None,
        cache_key: str | None,
        now: datetime | None = None,
    ) -> bool:
        """One image's item, written by its Map branch once its PNG is stored (or its outcome known)."""
        now = now or datetime.now(UTC)
        request = event["request"]
        namespace, job_id = str(event.get("caller_namespace") or ""), str(event["request_id"])
        index = int(record["index"])
        made = f"{timestamp(now)}#{job_id}#{index:04d}"
        stored = record.get("status") == "SUCCEEDED" and bool(record.get("key"))
        item: dict[str, Any] = {
            PK: job_pk(namespace, job_id),
            SK: image_sk(index),
            "kind": "image",
            "caller_namespace": namespace,
            "job_id": job_id,
            "index": index,
            "key": record.get("key"),
            "prompt": request.get("prompt"),
            "negative_prompt": request.get("negative_prompt"),
            "model": event["model"],
            "model_id": record.get("model_id"),
            "parameters": {k: v for k, v in request.items() if k not in {"prompt", "negative_prompt"}},
            "seed": record.get("seed"),
            "status": record.get("status"),
            "reason_code": record.get("reason_code"),
            "size_bytes": record.get("size_bytes"),
            "width": record.get("width"),
            "height": record.get("height"),
            "cost_usd": cost_usd,
            "cached": bool(record.get("cached")),
            "cached_from": record.get("cached_from"),
            #: Lineage: what the image was made from. A refinement's record carries ``lineage`` (the
            #: operation, its source image and parameters: issue 16) and its parent is the source; a
            #: cache copy's parent is the image it was copied from.
            "lineage": record.get("lineage"),
            "parent_key": _parent_of(record),
            "created_at": timestamp(now),
            TTL_ATTRIBUTE: self.expires_at(now),
        }
        if stored:
            words = words_of(" ".join(filter(None, [request.get("prompt")])))
            item.update(
                caller=f"CALLER#{namespace}",
                caller_model=f"CALLER#{namespace}#MODEL#{event['model']}",
                made=made,
                image_key=record["key"],
            )
            if words:
                item["words"] = set(words)
            if cache_key:
                item["cache_key"] = cache_key
        return self.write("image", lambda: self.table.put_item(Item=_to_item(item)))

    # -- reads -----------------------------------------------------------------------------------
    def find_cached(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The newest stored image of ``key`` that has not expired (TTL deletes lazily), or None."""
        answer = self.table.query(
            IndexName=BY_CACHE_KEY,
            KeyConditionExpression="cache_key = :k",
            FilterExpression=f"{TTL_ATTRIBUTE} > :now",
            ExpressionAttributeValues={":k": key, ":now": int(now if now is not None else time.time())},
            ScanIndexForward=False,
            Limit=10,
        )
        items = answer.get("Items") or []
        return _from_item(items[0]) if items else None

    def jobs(
        self,
        namespace: str,
        *,
        statuses: Iterable[str] = (),
        limit: int = 20,
        start: Mapping[str, Any] | None = None,
        max_read: int = LIST_MAX_READ,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A caller's jobs, newest first (one Query of ``by-caller-jobs``), of ``statuses`` (any when
        empty), at most ``limit``, from ``start`` (the last key of the page before), and the last key
        read when there is more. A filtered list reads at most ``max_read`` items per call, so it may
        answer fewer than ``limit`` jobs and still a key."""
        wanted = sorted(set(statuses))
        kwargs: dict[str, Any] = {
            "IndexName": BY_CALLER_JOBS,
            "KeyConditionExpression": "caller_jobs = :caller",
            "ExpressionAttributeValues": {":caller": f"CALLER#{namespace}"},
            "ScanIndexForward": False,
        }
        if wanted:
            kwargs["FilterExpression"] = (
                "#status IN (" + ", ".join(f":s{n}" for n in range(len(wanted))) + ")"
            )
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            kwargs["ExpressionAttributeValues"].update({f":s{n}": s for n, s in enumerate(wanted)})
        found: list[dict[str, Any]] = []
        read = 0
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = dict(start)
            kwargs["Limit"] = min(limit - len(found), max_read - read) if not wanted else max_read - read
            answer = self.table.query(**kwargs)
            read += int(answer.get("ScannedCount", 0))
            items = answer.get("Items") or []
            for position, item in enumerate(items):
                found.append(_from_item(item))
                if len(found) == limit:
                    more = "LastEvaluatedKey" in answer or position + 1 < len(items)
                    return found, job_list_key(item) if more else None
            start = answer.get("LastEvaluatedKey")
            if not start:
                return found, None
            if read >= max_read:
                return found, dict(start)

    def job_images(self, namespace: str, job_id: str) -> list[dict[str, Any]]:
        """A job's images, by index."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": f"{PK} = :pk AND begins_with({SK}, :image)",
            "ExpressionAttributeValues": {":pk": job_pk(namespace, job_id), ":image": "IMAGE#"},
        }
        while True:
            answer = self.table.query(**kwargs)
            items.extend(_from_item(i) for i in answer.get("Items") or [])
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def image_by_key(self, key: str) -> dict[str, Any] | None:
        answer = self.table.query(
            IndexName=BY_KEY, KeyConditionExpression="image_key = :k", ExpressionAttributeValues={":k": key}
        )
        items = answer.get("Items") or []
        return _from_item(items[0]) if items else None

    def search(self, namespace: str, query: SearchQuery) -> tuple[list[dict[str, Any]], str | None]:
        """A caller's stored images matching ``query``, newest first, and the token of the next page.

        One Query of ``by-caller`` (or ``by-caller-model`` with a model) over the time range, filtered
        on the prompt's words; it reads at most :data:`SEARCH_MAX_READ` items, so a page may hold fewer
        than ``limit`` images and still have a next token (the range is not all read yet).
        """
        if query.model:
            index, key_attr, key_value = (
                BY_CALLER_MODEL,
                "caller_model",
                f"CALLER#{namespace}#MODEL#{query.model}",
            )
        else:
            index, key_attr, key_value = BY_CALLER, "caller", f"CALLER#{namespace}"
        values: dict[str, Any] = {
            ":pk": key_value,
            ":since": timestamp(query.since) if query.since else "0",
            ":until": (timestamp(query.until) if query.until else "9") + "~",
        }
        filters = []
        for n, word in enumerate(query.words):
            values[f":w{n}"] = word
            filters.append(f"contains(words, :w{n})")
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"{key_attr} = :pk AND made BETWEEN :since AND :until",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        start = decode_token(query.next_token, key_attr, key_value)
        found: list[dict[str, Any]] = []
        read = 0
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            kwargs["Limit"] = SEARCH_MAX_READ - read
            answer = self.table.query(**kwargs)
            read += int(answer.get("ScannedCount", 0))
            for item in answer.get("Items") or []:
                found.append(_from_item(item))
                if len(found) == query.limit:
                    last = {a: item[a] for a in (PK, SK, key_attr, "made")}
                    more = "LastEvaluatedKey" in answer or item is not answer["Items"][-1]
                    return found, encode_token(last) if more else None
            start = answer.get("LastEvaluatedKey")
            if not start:
                return found, None
            if read >= SEARCH_MAX_READ:
                return found, encode_token(start)


# -- search parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchQuery:
    """``GET /images/search``'s parameters, checked."""

    words: tuple[str, ...] = ()
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = SEARCH_DEFAULT_LIMIT
    next_token: str | None = None


def _moment(name: str, text: str, *, end: bool) -> datetime | FieldError:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1, milliseconds=-1) if end else moment
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return FieldError(
            name, f"must be a date (2026-11-30) or an ISO 8601 time (2026-11-30T15:00:00Z), not {text!r}"
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_search(
    params: Mapping[str, str | None], *, resolve_model: Callable[[str], str | FieldError]
) -> SearchQuery:
    """Check ``GET /images/search``'s query parameters; every problem is named in one InvalidRequest.

    ``resolve_model`` turns a model name into its registry id (or a FieldError naming ``model``).
    """
    errors: list[FieldError] = []
    unknown = sorted(set(params) - set(SEARCH_PARAMETERS))
    for name in unknown:
        errors.append(
            FieldError(name, f"is not a search parameter (they are {', '.join(SEARCH_PARAMETERS)})")
        )
    text = {k: (v or "").strip() for k, v in params.items() if k in SEARCH_PARAMETERS}
    words = tuple(words_of(text.get("q")))
    if text.get("q") and not words:
        errors.append(FieldError("q", f"must hold at least one word, not {text['q']!r}"))
    model: str | None = None
    if text.get("model"):
        resolved = resolve_model(text["model"])
        if isinstance(resolved, FieldError):
            errors.append(resolved)
        else:
            model = resolved
    since = _moment("since", text["since"], end=False) if text.get("since") else None
    until = _moment("until", text["until"], end=True) if text.get("until") else None
    for value in (since, until):
        if isinstance(value, FieldError):
            errors.append(value)
    if isinstance(since, datetime) and isinstance(until, datetime) and until < since:
        errors.append(
            FieldError("until", f"must not end before since ({text['since']}), not {text['until']}")
        )
    limit = SEARCH_DEFAULT_LIMIT
    if text.get("limit"):
        raw = text["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= SEARCH_MAX_LIMIT:
            errors.append(
                FieldError("limit", f"must be an integer from 1 to {SEARCH_MAX_LIMIT}, not {raw!r}")
            )
        else:
            limit = int(raw)
    if not (words or text.get("model") or text.get("since") or text.get("until")) and not errors:
        errors.append(FieldError("q", "a search needs at least one of q, model, since or until"))
    if errors:
        raise InvalidRequest(errors)
    return SearchQuery(
        words=words,
        model=model,
        since=since if isinstance(since, datetime) else None,
        until=until if isinstance(until, datetime) else None,
        limit=limit,
        next_token=text.get("next_token") or None,
    )


def encode_token(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(key), sort_keys=True).encode()).decode().rstrip("=")


def decode_token(token: str | None, key_attr: str, key_value: str) -> dict[str, Any] | None:
    """The start key a next_token holds; one of another caller's (or another query's) is refused."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        key = None
    if not isinstance(key, dict) or key.get(key_attr) != key_value or set(key) != {PK, SK, key_attr, "made"}:
        raise InvalidRequest([FieldError("next_token", "is not a token this search returned")])
    return key


# -- answers ---------------------------------------------------------------------------------------------

#: What a search answer says of each image.
SHOWN = (
    "key", "job_id", "index", "prompt", "negative_prompt", "model", "seed", "parameters", "width", "height",
    "size_bytes", "cost_usd", "cached", "cached_from", "parent_key", "lineage", "created_at",
)  # fmt: skip


def search_answer(
    items: Sequence[Mapping[str, Any]], next_token: str | None, *, presign: Callable[[str], str]
) -> dict[str, Any]:
    """The JSON of a search: each image with a fresh presigned URL, and the next page's token."""
    images = [{**{k: item.get(k) for k in SHOWN}, "url": presign(str(item["key"]))} for item in items]
    return {"images": images, "count": len(images), "next_token": next_token}


def stored_keys(items: Iterable[Mapping[str, Any]]) -> set[str]:
    """The S3 keys of the stored images among index items."""
    return {
        str(i["key"])
        for i in items
        if i.get("kind") == "image" and i.get("status") == "SUCCEEDED" and i.get("key")
    }


def search_images(
    index: ImageIndex | None,
    namespace: str,
    params: Mapping[str, str | None],
    *,
    allowed_models: Sequence[str],
    presign: Callable[[str], str],
) -> dict[str, Any]:
    """``GET /images/search`` for the caller of ``namespace``, deployed and offline: the checked
    parameters (InvalidRequest naming each bad one), one search of the caller's own images, each with a
    fresh URL from ``presign``. Raises LookupError when the deployment has no index."""
    query = parse_search(params, resolve_model=lambda name: _registry_id(name, allowed_models))
    if index is None:
        raise LookupError("this deployment has no image index")
    items, token = index.search(namespace, query)
    return search_answer(items, token, presign=presign)


def _registry_id(name: str, allowed: Sequence[str]) -> str | FieldError:
    found = resolve_model(name, allowed=tuple(allowed))
    return found if isinstance(found, FieldError) else found.registry_id

"""Internet scale, by simulation (issue 15, item 4): a day of traffic through the deployed workflow.

A SimPy discrete-event simulation of the deployment: requests arrive through the day (10,000 an hour at
the peak, with bursts), each asks one of three models for 1-40 images, starts a Standard execution, and
every image is one Map branch that takes a slot of its model (``AcquireSlot``), calls Bedrock
(``GenerateImage``: the call, then the upload) and gives the slot back (``ReleaseSlot``). What the
deployment meets is modelled from the AWS documentation (``simulation_scenario.json``, each limit with
its page): Lambda's account concurrency, Step Functions' state-transition, StartExecution and
SendTaskSuccess token buckets, the Map's 40 iterations, Bedrock's quota per model (a call past it is
answered ThrottlingException, as the stand-in does), DynamoDB's 1,000 write and 3,000 read units a second
per partition and 400 KB per item (a throttled request is retried as botocore does, then fails its step).

**The same algorithm as the code.** Admission control here is :class:`image_pipeline.core.admission.Semaphore`
itself over :class:`imagegen.testing.memory_slots.MemorySlotStore` on the simulation's clock, called as the
handlers call it: ``AcquireSlot`` (``lambda:invoke.waitForTaskToken``) invokes the Admission function
with a new task token, which calls ``acquire`` (a slot taken: the function wakes the branch itself; none: the
ticket is queued and the branch waits on its token, costing no state transition and no write);
GenerateImage hands its slot on right after the model's answer (``release_after_call``: one ticket, no
fill) and ``ReleaseSlot`` releases with fill; the keeper calls ``sweep`` every minute. ``notify`` is
``SendTaskSuccess``: it wakes the branch's SimPy event, or answers False when the token's task no longer
waits (its ``TimeoutSeconds`` of 300 s or its execution's passed: then the ASL's Retry on
``States.Timeout`` asks again, the ticket keeping its place). ``tests/unit/test_memory_slots.py`` replays
random operations on that store and on the DynamoDB store in moto and requires the same answers. The
store here meters DynamoDB's limits per partition (each model's slots item, and its tickets in the
waiters table) and their round trips; the retry policies and ``TimeoutSeconds`` are read from
``statemachine/generate_images.asl.json``. Executions past their 30-minute ``TimeoutSeconds`` stop.

**Calibrated** with what was measured offline: the handlers' own time from
``benchmarks/results/fanout.json`` (GenerateImage beside its model call, ValidateRequest, BuildManifest),
and the Admission handler's own time per path (take, queue, hand-off, give back), measured at start over
moto's DynamoDB with the deployment's two tables. What cannot be
measured here (model latencies in AWS, Step Functions' time between states, a DynamoDB round trip, an
S3 upload) is an estimate, named in the scenario file and in the result.

    python benchmarks/simulation.py                  # the day at 1x and the peak hour at 10x, with and without
    python benchmarks/simulation.py --minutes 5 --load 0.2 --results-dir /tmp/s   # a smoke run

Writes ``results/simulation.json``. Not part of ``make test``: ``tests/e2e/test_simulation_smoke.py``
runs a few simulated minutes and checks the report's invariants.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import simpy
from harness import RESULTS_DIR, ROOT, RunContext, load_average, percentile, write_result
from image_pipeline.core.admission import (
    COUNT,
    DEFAULT_LEASE_SECONDS,
    LEASE_PREFIX,
    PLACE,
    QUEUE_KEY,
    HandOffReport,
    HandOver,
    NoSlot,
    Semaphore,
    SlotState,
    Ticket,
    holder_id,
    release_after_call,
    ticket_place,
)
from image_pipeline.core.time_budget import ADMISSION_DYNAMODB
from image_pipeline.models.prices import price_table

from imagegen.testing.memory_slots import MemorySlotStore

SCENARIO = Path(__file__).with_name("simulation_scenario.json")
ASL = ROOT / "statemachine" / "generate_images.asl.json"
FANOUT = RESULTS_DIR / "fanout.json"
#: Execution names are ``<namespace>-<job id>`` (core/tenancy.py): about 40 characters.
EXECUTION_NAME_LENGTH = 40
BEDROCK_ATTEMPTS = 3  # core/settings.py bedrock_max_attempts: botocore's standard mode, 3 attempts
#: The Admission function's DynamoDB client (and GenerateImage's for its early hand-off): its attempts
#: per request, read from the code (core/time_budget.py: one attempt, so a throttled request fails at once).
ADMISSION_ATTEMPTS = ADMISSION_DYNAMODB.attempts
GENERATE_IMAGE_MB = 512
#: The 10x run: the peak's first 5 minutes (15:00-15:05), quotas 10x too, so what breaks is not Bedrock.
PEAK_WINDOW_HOURS = 1 / 12
STEP_MB = 256
#: The simulated day (its date only names the executions' start times, which order the queue).
START_OF_DAY = datetime(2026, 11, 30, tzinfo=UTC)

Process = Generator[Any, Any, Any]


class ExecutionTimedOut(Exception):
    """The execution passed its ``TimeoutSeconds``: it enters no further state (its Lambda invocations
    under way run to their end; a task token it waits on is dead)."""


class TaskFailed(Exception):
    """A Task's error after its retries (the ASL's Catch takes it): the error's name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# -- the ASL's retry policies --------------------------------------------------------------------


@dataclass(frozen=True)
class Retrier:
    errors: tuple[str, ...]
    interval: float
    max_attempts: int
    backoff: float
    max_delay: float | None
    full_jitter: bool

    def matches(self, error: str) -> bool:
        return error in self.errors or "States.ALL" in self.errors

    def delay(self, retry_index: int, rng: random.Random) -> float:
        """Step Functions' wait before retry ``retry_index`` (0-based): interval x backoff^i, capped
        at MaxDelaySeconds, uniformly drawn below it with full jitter."""
        wait = self.interval * self.backoff**retry_index
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return rng.uniform(0, wait) if self.full_jitter else wait


def asl_retriers(path: Path = ASL) -> dict[str, list[Retrier]]:
    """Every state's Retry list, Map branches included, by state name."""
    definition = json.loads(path.read_text())
    found: dict[str, list[Retrier]] = {}

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            found[name] = [
                Retrier(
                    tuple(r["ErrorEquals"]),
                    float(r.get("IntervalSeconds", 1)),
                    int(r.get("MaxAttempts", 3)),
                    float(r.get("BackoffRate", 2.0)),
                    float(r["MaxDelaySeconds"]) if "MaxDelaySeconds" in r else None,
                    r.get("JitterStrategy") == "FULL",
                )
                for r in state.get("Retry", [])
            ]
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor["States"])

    walk(definition["States"])
    return found


def asl_timeouts(path: Path = ASL) -> dict[str, float]:
    """Every Task state's ``TimeoutSeconds``, Map branches included, by state name."""
    definition = json.loads(path.read_text())
    found: dict[str, float] = {}

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            if "TimeoutSeconds" in state:
                found[name] = float(state["TimeoutSeconds"])
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor["States"])

    walk(definition["States"])
    return found


# -- AWS limits -----------------------------------------------------------------------------------


class TokenBucket:
    """A token bucket (Step Functions' throttling scheme): ``bucket`` tokens, ``refill`` a second."""

    def __init__(self, bucket: float, refill: float) -> None:
        self.size, self.refill, self.tokens, self.at = bucket, refill, bucket, 0.0

    def _fill(self, now: float) -> None:
        if now > self.at:  # a call dated a little earlier than the last (inside an invocation) adds none
            self.tokens = min(self.size, self.tokens + (now - self.at) * self.refill)
            self.at = now

    def try_take(self, now: float) -> bool:
        self._fill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def delay_for(self, now: float) -> float:
        """Take a token, waiting in line when there is none: the seconds until it is there."""
        self._fill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.refill


#: DynamoDB's size of a number: about one byte per two significant digits, plus one; a lease's expiry
#: (epoch seconds with microseconds, 16 digits) is 9 bytes, the count 2, a TTL (10 digits) 6.
EXPIRY_BYTES = 9
COUNT_BYTES = 2
TTL_BYTES = 6
#: A holder id: the execution name, ``#`` and the image's index (1-2 digits).
HOLDER_LENGTH = EXECUTION_NAME_LENGTH + 3
#: One lease in the slots item: its attribute name (``lease:<holder>``) and its expiry.
LEASE_BYTES = len(LEASE_PREFIX) + HOLDER_LENGTH + EXPIRY_BYTES
#: ``$$.Execution.StartTime`` as Step Functions gives it (``2026-11-30T14:00:00.000Z``).
START_TIME_LENGTH = 24
#: The waiting counter's item (``~waiting``): under 1 KB.
COUNTER_WRITE_UNITS = 1


def slots_item_bytes(model: str, leases: int) -> int:
    """The slots item's size as DynamoDB counts it (attribute names and values), from its leases."""
    return len("model") + len(model) + len(COUNT) + COUNT_BYTES + leases * LEASE_BYTES


def ticket_bytes(model: str, token_characters: int) -> int:
    """One ticket item of the waiters table as ``DynamoSlotStore`` writes it: model, place
    (``<start time>#<holder>``), holder, token, since and the TTL attribute, names and values."""
    place = START_TIME_LENGTH + 1 + HOLDER_LENGTH
    return (
        len(QUEUE_KEY) + len(model)
        + len(PLACE) + place
        + len("holder") + HOLDER_LENGTH
        + len("token") + token_characters
        + len("since") + EXPIRY_BYTES
        + len("expires_at") + TTL_BYTES
    )  # fmt: skip


class DynamoRefused(Exception):
    """DynamoDB's refusal of a request: ``ProvisionedThroughputExceededException`` after botocore's
    attempts (the partition's units for the second were spent each time) or ``ValidationException``
    (the item would pass 400 KB; not retried)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
        self.response = {"Error": {"Code": code}}  # as botocore's ClientError carries it


THROTTLED = "ProvisionedThroughputExceededException"
TOO_LARGE = "ValidationException"
Partition = tuple[str, str]  # ("slots" | "waiters", model)


class MeteredSlotStore(MemorySlotStore):
    """The memory store with DynamoDB's limits and round trips, per partition: a model's slots item
    (``("slots", model)``) and its tickets (``("waiters", model)``: the waiters table's partition key is
    the model, so one model's queue is one partition as long as DynamoDB does not split it).

    Every request costs a round trip (estimated) and units: a write 1 per KB of the larger of the item
    before and after (a write whose condition fails too), a strongly consistent read 1 per 4 KB (a
    Query: of the items it returns, together), an eventually consistent read half that. A partition
    takes ``write_units`` and ``read_units`` a second; past them the request is throttled and botocore
    retries it (``attempts`` in all, full-jitter backoff; the Admission function's client makes one), then it
    raises ``DynamoRefused`` and changes
    nothing. A step is atomic at the instant the simulated Lambda function runs it; the time its
    requests take (round trips, backoffs; ``SendTaskSuccess`` adds its own) adds up in ``elapsed``,
    which the invocation then waits out, and each request is metered in the second it would be sent."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        write_units: int,
        read_units: int,
        item_limit: int,
        round_trip: float,
        attempts: int,
        rng: random.Random,
        token_characters: int,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.limit = {"write": float(write_units), "read": float(read_units)}
        self.item_limit = item_limit
        self.round_trip = round_trip
        self.attempts = attempts
        self.rng = rng
        self.token_characters = token_characters
        self.elapsed = 0.0
        self.units: dict[str, dict[Partition, dict[int, float]]] = {
            kind: defaultdict(lambda: defaultdict(float)) for kind in ("write", "read")
        }
        self.total_units = {"write": 0.0, "read": 0.0}
        self.requests = 0
        self.throttled: dict[Partition, int] = defaultdict(int)  # attempts throttled
        self.refused: dict[Partition, int] = defaultdict(int)  # requests failed after every attempt
        self.max_bytes: dict[str, int] = defaultdict(int)
        self.too_large: dict[str, int] = defaultdict(int)

    def begin(self) -> None:
        """A new Lambda invocation: its requests' time starts at 0."""
        self.elapsed = 0.0

    def _send(self, partition: Partition, kind: str, units: float, step: Callable[[], Any]) -> Any:
        spent = self.units[kind][partition]
        for attempt in range(1, self.attempts + 1):
            self.elapsed += self.round_trip
            self.requests += 1
            second = int(self.clock() + self.elapsed)
            if spent[second] + units <= self.limit[kind]:
                spent[second] += units
                self.total_units[kind] += units
                return step()
            self.throttled[partition] += 1
            if attempt < self.attempts:  # botocore's standard mode: full jitter, base 1 s, at most 20 s
                self.elapsed += self.rng.random() * min(2.0 ** (attempt - 1), 20.0)
        self.refused[partition] += 1
        raise DynamoRefused(THROTTLED)

    # -- the slots item -------------------------------------------------------------------------
    def _slots_bytes(self, model: str) -> int:
        return slots_item_bytes(model, len(self._item(model).leases))

    def _slots_write(self, model: str, grows_by: int, step: Callable[[], Any]) -> Any:
        before = self._slots_bytes(model)
        if before + grows_by > self.item_limit:
            self.too_large[model] += 1
            raise DynamoRefused(TOO_LARGE)
        units = max(1, math.ceil((before + max(0, grows_by)) / 1024))
        result = self._send(("slots", model), "write", units, step)
        self.max_bytes[model] = max(self.max_bytes[model], before, self._slots_bytes(model))
        return result

    def take(self, model: str, holder: str, limit: int, expires: float) -> Any:
        return self._slots_write(
            model, LEASE_BYTES, lambda: MemorySlotStore.take(self, model, holder, limit, expires)
        )

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        return bool(
            self._slots_write(
                model, 0, lambda: MemorySlotStore.give_back(self, model, holder, expected_expiry)
            )
        )

    def hand_over(
        self, model: str, giver: str, taker: str, expires: float, giver_expiry: float | None = None
    ) -> HandOver:
        moved: HandOver = self._slots_write(
            model, 0, lambda: MemorySlotStore.hand_over(self, model, giver, taker, expires, giver_expiry)
        )
        return moved

    def renew(self, model: str, holder: str, seen: float, expires: float) -> bool:
        return bool(
            self._slots_write(model, 0, lambda: MemorySlotStore.renew(self, model, holder, seen, expires))
        )

    def read(self, model: str) -> SlotState:
        units = max(1, math.ceil(self._slots_bytes(model) / 4096))  # GetItem, ConsistentRead
        state: SlotState = self._send(
            ("slots", model), "read", units, lambda: MemorySlotStore.read(self, model)
        )
        return state

    # -- the queue ------------------------------------------------------------------------------
    def _ticket_units(self, model: str) -> int:
        return max(1, math.ceil(ticket_bytes(model, self.token_characters) / 1024))

    def _count(self, model: str) -> None:
        """The waiting counter's UpdateItem (DynamoSlotStore swallows its failure: a metric)."""
        with contextlib.suppress(DynamoRefused):
            self._send(("waiters", model), "write", COUNTER_WRITE_UNITS, lambda: None)

    def enqueue(self, model: str, ticket: Ticket) -> bool:
        new: bool = self._send(
            ("waiters", model),
            "write",
            self._ticket_units(model),
            lambda: MemorySlotStore.enqueue(self, model, ticket),
        )
        if new:
            self._count(model)
        return new

    def oldest(self, model: str, count: int) -> list[Ticket]:
        returned = min(max(1, count), len(self._queue(model)))
        units = max(1, math.ceil(returned * ticket_bytes(model, self.token_characters) / 4096))
        tickets: list[Ticket] = self._send(
            ("waiters", model), "read", units, lambda: MemorySlotStore.oldest(self, model, count)
        )
        return tickets

    def claim(self, model: str, ticket: Ticket) -> bool:
        claimed: bool = self._send(
            ("waiters", model),
            "write",
            self._ticket_units(model),
            lambda: MemorySlotStore.claim(self, model, ticket),
        )
        if claimed:
            self._count(model)
        return claimed

    def requeue(self, model: str, ticket: Ticket) -> None:
        present = ticket.place in self._queue(model)
        self._send(
            ("waiters", model),
            "write",
            self._ticket_units(model),
            lambda: MemorySlotStore.requeue(self, model, ticket),
        )
        if not present:
            self._count(model)

    def waiting(self, model: str) -> int:
        count: int = self._send(  # GetItem of the counter, eventually consistent: half a unit
            ("waiters", model), "read", 0.5, lambda: MemorySlotStore.waiting(self, model)
        )
        return count

    def recount(self, model: str) -> int | None:
        """The keeper's recount: a consistent COUNT query reads every ticket (a unit per 4 KB, capped at
        the pages it reads), then the counter's write."""
        tickets = len(self._queue(model))
        units = max(1, math.ceil(min(tickets * ticket_bytes(model, self.token_characters), 5 * 2**20) / 4096))
        count: int | None = self._send(
            ("waiters", model), "read", units, lambda: MemorySlotStore.recount(self, model)
        )
        self._count(model)
        return count


# -- calibration ----------------------------------------------------------------------------------


def calibrate(samples: int = 60) -> dict[str, Any]:
    """The handlers' own seconds measured offline: from ``results/fanout.json`` (GenerateImage beside
    its model call, ValidateRequest, BuildManifest: medians), and the Admission handler's four paths
    timed here over moto's DynamoDB with the two tables ``imagegen.runtime.engine.create_admission_table``
    creates (the same ``Semaphore`` and ``DynamoSlotStore`` the function runs): an acquire that takes a
    free slot, one that finds none and queues its ticket (then fills), a release that hands its slot to
    a waiting ticket (and wakes it: a no-op here) and one that gives it back. moto answers in-process,
    so each figure is our code, botocore's and moto's own work without a network: the simulation adds
    an estimated round trip per request on top (an upper bound: moto's work stands in for DynamoDB's)."""
    fanout = json.loads(FANOUT.read_text())
    handlers = fanout["handler_seconds"]
    generate_own = (
        handlers["imagegen-generate-image"]["median"] - fanout["generate_image_model_seconds"]["median"]
    )
    import boto3
    from image_pipeline.core.admission import DynamoSlotStore
    from moto import mock_aws

    from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table

    timings: dict[str, list[float]] = defaultdict(list)

    def timed(kind: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = call()
        timings[kind].append(time.perf_counter() - began)
        return result

    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        create_admission_table(client)
        semaphore = Semaphore(DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE))
        for i in range(samples):
            _time_paths(semaphore, i, timed)
    return {
        "source": "benchmarks/results/fanout.json (medians of the offline run it records) and moto 5.2.5 timed "
        "here over the slots and waiters tables (imagegen.runtime.engine.create_admission_table)",
        "fanout_measured_at": fanout.get("meta", {}).get("written_at"),
        "generate_image_own_seconds": round(max(0.0, generate_own), 4),
        "validate_request_seconds": handlers["imagegen-validate-request"]["median"],
        "build_manifest_seconds": handlers["imagegen-build-manifest"]["median"],
        **{f"admission_{kind}_seconds": round(statistics.median(t), 4) for kind, t in timings.items()},
        "admission_samples": samples,
    }


def _time_paths(semaphore: Semaphore, i: int, timed: Callable[[str, Callable[[], Any]], Any]) -> None:
    """One round of the four admission paths at a quota of 1 (see :func:`calibrate`)."""
    now = time.time()
    first, second = holder_id("calibration", 2 * i), holder_id("calibration", 2 * i + 1)
    tickets = [Ticket(h, f"token-{h}", ticket_place(None, h, now), now) for h in (first, second)]

    def woken(token: str, output: Any) -> bool:
        return True

    def never(execution: str) -> bool:
        return False

    granted = timed(
        "acquire_take", lambda: semaphore.acquire("m", tickets[0], 1, now, notify=woken, cancelled=never)
    )
    queued = timed(
        "acquire_queue", lambda: semaphore.acquire("m", tickets[1], 1, now, notify=woken, cancelled=never)
    )
    handed = timed(
        "release_hand_off", lambda: semaphore.release("m", first, 1, now, notify=woken, cancelled=never)
    )
    back = timed(
        "release_give_back", lambda: semaphore.release("m", second, 1, now, notify=woken, cancelled=never)
    )
    if granted is None or queued is not None or not handed or not back:
        raise RuntimeError("calibration: the admission paths did not go as timed")


# -- the simulation -------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    name: str
    share: float
    quota: int
    median: float
    sigma: float
    price: float


@dataclass
class Request:
    rid: int
    model: str
    images: int
    arrival: float
    execution_name: str
    first_image: float | None = None
    last_image: float | None = None
    ended: float | None = None
    statuses: list[str] = field(default_factory=list)
    refused: bool = False
    failed_step: str | None = None
    started: float = 0.0
    deadline: float = math.inf
    start_time: str | None = None  # $$.Execution.StartTime
    timed_out: bool = False


@dataclass
class Config:
    admission: bool
    load: float
    start_hour: float
    hours: float
    seed: int
    release_after_model_call: bool
    quota_multiplier: float = 1.0
    #: A what-if, not the deployment: every DynamoDB partition's units a second multiplied.
    dynamodb_multiplier: float = 1.0


class Deployment:
    """One simulated deployment under one traffic run."""

    def __init__(self, config: Config, scenario: dict[str, Any], calibration: dict[str, Any]) -> None:
        self.config = config
        self.scenario = scenario
        self.cal = calibration
        self.est = scenario["estimates"]
        self.limits = scenario["limits"]
        self.env = simpy.Environment(initial_time=config.start_hour * 3600)
        self.rng = random.Random(config.seed)  # latencies, jitter: the workflow's own draws
        self.traffic_rng = random.Random(config.seed + 1)  # arrivals: the same traffic in every variant
        self.retriers = asl_retriers()
        prices = price_table()
        self.models = {
            name: ModelSpec(
                name,
                spec["share_of_requests"],
                max(1, round(spec["quota_in_flight"] * config.quota_multiplier)),
                spec["latency_seconds"]["median"],
                spec["latency_seconds"]["sigma"],
                prices.models_per_image[name].price,
            )
            for name, spec in scenario["models"].items()
        }
        self.prices = prices
        self.store = MeteredSlotStore(
            lambda: self.env.now,
            write_units=self.limits["dynamodb_partition_write_units_per_second"]["value"]
            * config.dynamodb_multiplier,
            read_units=self.limits["dynamodb_partition_read_units_per_second"]["value"]
            * config.dynamodb_multiplier,
            item_limit=self.limits["dynamodb_item_bytes"]["value"],
            round_trip=self.est["dynamodb_round_trip_seconds"],
            attempts=ADMISSION_ATTEMPTS,
            rng=random.Random(config.seed + 2),
            token_characters=self.est["task_token_characters"],
        )
        self.semaphore = Semaphore(self.store)
        send = self.limits["step_functions_send_task_success"]
        self.send_task = TokenBucket(send["bucket"], send["refill_per_second"])
        self.tokens: dict[str, simpy.Event] = {}  # the task tokens whose tasks wait, and their wake-up
        self.token_serial = itertools.count(1)
        self.acquire_timeout = asl_timeouts()["AcquireSlot"]
        self.keeper_interval = self.limits["admission_keeper_interval_seconds"]["value"]
        transitions = self.limits["step_functions_state_transitions"]
        starts = self.limits["step_functions_start_execution"]
        self.transitions = TokenBucket(transitions["bucket"], transitions["refill_per_second"])
        self.starts = TokenBucket(starts["bucket"], starts["refill_per_second"])
        self.lambda_limit = self.limits["lambda_concurrent_executions"]["value"]
        self.map_limit = self.limits["map_inline_max_concurrency"]["value"]
        # counters
        self.requests: list[Request] = []
        self.lambda_active = 0
        self.lambda_peak = 0
        self.function_active: dict[str, int] = defaultdict(int)
        self.function_at_peak: dict[str, int] = {}
        self.function_throttled: dict[str, int] = defaultdict(int)
        self.lambda_throttled = 0
        self.lambda_requests = 0
        self.lambda_gb_seconds = 0.0
        self.transitions_total = 0
        self.transitions_delayed = 0
        self.transitions_per_second: dict[int, int] = defaultdict(int)
        self.start_throttled = 0
        self.in_flight: dict[str, int] = defaultdict(int)
        self.in_flight_peak: dict[str, int] = defaultdict(int)
        self.bedrock_calls: dict[str, int] = defaultdict(int)
        self.bedrock_refused: dict[str, int] = defaultdict(int)
        self.model_seconds: dict[str, float] = defaultdict(float)
        self.waiting: dict[str, int] = defaultdict(int)
        self.waiting_peak: dict[str, int] = defaultdict(int)
        self.waited: dict[str, list[float]] = defaultdict(list)
        self.saturated_seconds: dict[str, int] = defaultdict(int)
        self.saturated_busy: dict[str, float] = defaultdict(float)
        self.no_slot_answers = 0
        self.acquire_timeouts = 0
        self.send_task_calls = 0
        self.send_task_per_second: dict[int, int] = defaultdict(int)
        self.send_task_delayed = 0
        self.dead_tokens = 0
        self.early_release_failed_count = 0
        self.keeper_rounds = 0
        self.keeper_failed = 0
        self.tickets_peak: dict[str, int] = defaultdict(int)
        self.s3_puts = 0
        self.s3_gets = 0
        self.slot_violations = 0

    # -- building blocks ------------------------------------------------------------------------

    def transition(self, request: Request | None = None) -> Process:
        """Enter a state: one state transition (Step Functions' token bucket, waited for when empty).
        An execution past its ``TimeoutSeconds`` enters no state: ``ExecutionTimedOut``."""
        now = self.env.now
        if request is not None and now >= request.deadline:
            raise ExecutionTimedOut()
        self.transitions_total += 1
        self.transitions_per_second[int(now)] += 1
        delay = self.transitions.delay_for(now)
        if delay > 0:
            self.transitions_delayed += 1
        yield self.env.timeout(delay + self.est["state_transition_seconds"])

    def task(self, state: str, body: Callable[[], Process], request: Request | None = None) -> Process:
        """A Task state: its attempts and the ASL's Retry for it; TaskFailed for its Catch."""
        retriers = self.retriers[state]
        used = [0] * len(retriers)
        yield from self.transition(request)
        while True:
            try:
                return (yield from body())
            except TaskFailed as failure:
                for i, retrier in enumerate(retriers):
                    if retrier.matches(failure.name):
                        if used[i] >= retrier.max_attempts:
                            raise
                        delay = retrier.delay(used[i], self.rng)
                        used[i] += 1
                        break
                else:
                    raise
            yield self.env.timeout(delay)
            yield from self.transition(request)  # a retry is billed as a transition

    def invoke(self, memory_mb: int, work: Callable[[], Process], function: str) -> Process:
        """One Lambda invocation: throttled past the account's concurrency (the caller's Retry)."""
        self.lambda_requests += 1
        if self.lambda_active >= self.lambda_limit:
            self.lambda_throttled += 1
            self.function_throttled[function] += 1
            raise TaskFailed("Lambda.TooManyRequestsException")
        self.lambda_active += 1
        self.function_active[function] += 1
        if self.lambda_active > self.lambda_peak:
            self.lambda_peak = self.lambda_active
            self.function_at_peak = dict(self.function_active)
        began = self.env.now
        try:
            yield self.env.timeout(self.est["lambda_invoke_seconds"])
            return (yield from work())
        finally:
            self.lambda_active -= 1
            self.function_active[function] -= 1
            self.lambda_gb_seconds += (self.env.now - began) * memory_mb / 1024

    def sleep(self, seconds: float) -> Process:
        yield self.env.timeout(seconds)

    # -- admission: the very Semaphore over the memory store, on the simulation's clock ----------

    def begin_admission(self) -> None:
        """A Lambda invocation that runs the semaphore: its requests' time from 0, a fresh report."""
        self.store.begin()
        self.semaphore.report = HandOffReport()

    def notify(self, token: str, output: Mapping[str, Any]) -> bool:
        """``SendTaskSuccess(token, output)``, as ``admission_runtime.send_task_success``: True when the
        token's task waits (its branch is woken when the call has been answered), False when it no
        longer does (its wait timed out, or its execution did: ``TaskTimedOut``). The call's time and
        Step Functions' API bucket for it are added to the invocation's time."""
        self.send_task_calls += 1
        self.send_task_per_second[int(self.env.now + self.store.elapsed)] += 1
        self.store.elapsed += self.est["send_task_success_seconds"]
        queued = self.send_task.delay_for(self.env.now + self.store.elapsed)
        if queued > 0:
            self.send_task_delayed += 1
            self.store.elapsed += queued
        wake = self.tokens.pop(token, None)
        if wake is None:
            self.dead_tokens += 1
            return False
        answer = dict(output)
        timer = self.env.timeout(self.store.elapsed)

        def woken(_event: simpy.Event) -> None:
            wake.succeed(answer)

        timer.callbacks.append(woken)
        return True

    def cancelled(self, execution: str) -> bool:
        """The cancellation marker's S3 look-up (no job is cancelled in this traffic)."""
        self.s3_gets += 1
        self.store.elapsed += self.est["s3_request_seconds"]
        return False

    def admission_acquire(self, request: Request, holder: str, token: str) -> Process:
        """The Admission function's ``acquire`` (handlers/admission.py): take a slot and wake the branch
        itself, or queue the ticket; NoSlot when DynamoDB throttled the take or the enqueue."""
        model, now = request.model, self.env.now
        limit = self.models[model].quota
        self.begin_admission()
        ticket = Ticket(holder, token, ticket_place(request.start_time, holder, now), now)
        error, kind = None, "acquire_take"
        try:
            granted = self.semaphore.acquire(
                model, ticket, limit, now, notify=self.notify, cancelled=self.cancelled
            )
            if granted is None:
                kind = "acquire_queue"
            else:
                answer = {"holder": holder, "admission": "granted", "limit": limit, "waited_seconds": 0.0}
                if not self.notify(token, answer):  # the branch stopped waiting meanwhile: the slot goes on
                    self.semaphore.release(
                        model, holder, limit, now, notify=self.notify, cancelled=self.cancelled
                    )
        except NoSlot:
            self.no_slot_answers += 1
            error = "NoSlot"
        except Exception as exc:  # DynamoDB's refusal after botocore's attempts: the function fails
            error = f"DynamoDB.{getattr(exc, 'code', type(exc).__name__)}"
        yield self.env.timeout(self.store.elapsed + self.cal[f"admission_{kind}_seconds"])
        if error:
            raise TaskFailed(error)

    def acquire_slot(self, request: Request, holder: str) -> Process:
        """One attempt of ``AcquireSlot`` (``lambda:invoke.waitForTaskToken``): a new task token, the
        Admission function invoked with it, then the wait for the token, without transitions or writes,
        until ``SendTaskSuccess`` or the state's ``TimeoutSeconds`` (``States.Timeout``: the ASL's Retry
        asks again, the ticket keeping its place) or the execution's timeout."""
        model, began = request.model, self.env.now
        token = f"{holder}/{next(self.token_serial)}"
        wake = self.env.event()
        self.tokens[token] = wake
        try:
            yield from self.invoke(
                STEP_MB, lambda: self.admission_acquire(request, holder, token), "Admission"
            )
        except TaskFailed:
            self.tokens.pop(token, None)  # the task failed: its token is dead
            raise
        waiting = token in self.tokens
        if waiting:
            self.waiting[model] += 1
            self.waiting_peak[model] = max(self.waiting_peak[model], self.waiting[model])
        try:
            while token in self.tokens:
                left = min(began + self.acquire_timeout, request.deadline) - self.env.now
                yield wake | self.env.timeout(max(0.0, left))
                if token in self.tokens and not wake.triggered:  # nobody sent it: the wait is over
                    del self.tokens[token]
                    if self.env.now >= request.deadline:
                        raise ExecutionTimedOut()
                    self.acquire_timeouts += 1
                    raise TaskFailed("States.Timeout")
            output = yield wake  # sent: the branch goes on once SendTaskSuccess is answered
        finally:
            if waiting:
                self.waiting[model] -= 1
        if output.get("admission") != "granted":
            raise TaskFailed(f"Admission.{output.get('admission')}")

    def admission_release(self, model: str, holder: str) -> Process:
        """``ReleaseSlot`` / ``ReleaseSlotAfterFailure``: the Admission function's full release (the
        slot handed on or given back if still held, then fill)."""

        def work() -> Process:
            self.begin_admission()
            limit, error = self.models[model].quota, None
            try:
                held = self.semaphore.release(
                    model, holder, limit, self.env.now, notify=self.notify, cancelled=self.cancelled
                )
            except Exception as exc:
                held, error = False, f"DynamoDB.{getattr(exc, 'code', type(exc).__name__)}"
            kind = "release_hand_off" if held and self.semaphore.report.woken else "release_give_back"
            yield self.env.timeout(self.store.elapsed + self.cal[f"admission_{kind}_seconds"])
            if error:
                raise TaskFailed(error)

        yield from self.invoke(STEP_MB, work, "Admission")

    def early_release_failed(self, exc: Exception) -> None:
        self.early_release_failed_count += 1

    def keeper(self) -> Process:
        """The keeper: the Admission function's ``sweep`` every minute (an EventBridge schedule)."""
        while True:
            yield self.env.timeout(self.keeper_interval)
            self.keeper_rounds += 1
            try:
                yield from self.invoke(STEP_MB, self.keeper_round, "Admission")
            except TaskFailed:
                self.keeper_failed += 1

    def keeper_round(self) -> Process:
        """handlers/admission.py ``_sweep``: every model with a lease or a ticket swept, then its
        slots in use and branches waiting read for the metrics."""
        self.begin_admission()
        now = self.env.now
        try:
            for model, spec in self.models.items():
                if not self.store.read(model).leases and not self.store.oldest(model, 1):
                    continue
                self.semaphore.sweep(model, spec.quota, now, notify=self.notify, cancelled=self.cancelled)
                self.store.read(model)
                self.store.waiting(model)
        except Exception:  # a refused request: the next round goes on
            self.keeper_failed += 1
        yield self.env.timeout(self.store.elapsed + self.cal["admission_release_give_back_seconds"])

    # -- Bedrock: a quota of calls in flight per model --------------------------------------------

    def call_model(self, model: str) -> Process:
        """InvokeModel with botocore's 3 attempts (standard mode, throttling base 1 s); past the quota
        Bedrock answers ThrottlingException; ModelThrottled after the last attempt."""
        spec = self.models[model]
        for attempt in range(1, BEDROCK_ATTEMPTS + 1):
            self.bedrock_calls[model] += 1
            if self.in_flight[model] < spec.quota:
                self.in_flight[model] += 1
                self.in_flight_peak[model] = max(self.in_flight_peak[model], self.in_flight[model])
                seconds = spec.median * math.exp(self.rng.gauss(0, spec.sigma))
                yield self.env.timeout(seconds)
                self.in_flight[model] -= 1
                self.model_seconds[model] += seconds
                return
            self.bedrock_refused[model] += 1
            if attempt < BEDROCK_ATTEMPTS:
                yield self.env.timeout(self.rng.random() * min(1.0 * 2 ** (attempt - 1), 20.0))
        raise TaskFailed("ModelThrottled")

    def generate(self, request: Request, holder: str) -> Process:
        def work() -> Process:
            self.s3_puts += 1  # the cancellation check (ListObjectsV2, priced as a PUT)
            yield from self.call_model(request.model)
            if self.config.admission and self.config.release_after_model_call:
                # GenerateImage's early hand-off: one ticket, no fill; never raises (ReleaseSlot is the net)
                self.begin_admission()
                release_after_call(
                    self.semaphore,
                    request.model,
                    holder,
                    self.models[request.model].quota,
                    self.env.now,
                    notify=self.notify,
                    cancelled=self.cancelled,
                    on_error=self.early_release_failed,
                )
                yield self.env.timeout(self.store.elapsed)
            yield self.env.timeout(self.cal["generate_image_own_seconds"] + self.est["image_upload_seconds"])
            self.s3_puts += 1
            return "SUCCEEDED"

        return (yield from self.invoke(GENERATE_IMAGE_MB, work, "GenerateImage"))

    # -- one request ----------------------------------------------------------------------------

    def image(self, request: Request, holder: str) -> Process:
        """One Map branch's states: its image's status."""
        model = request.model
        try:
            if self.config.admission:
                began = self.env.now
                yield from self.task("AcquireSlot", lambda: self.acquire_slot(request, holder), request)
                self.waited[model].append(self.env.now - began)
            status = yield from self.task("GenerateImage", lambda: self.generate(request, holder), request)
        except TaskFailed as failure:
            status = "THROTTLED" if failure.name == "ModelThrottled" else f"FAILED:{failure.name}"
            if self.config.admission:
                with contextlib.suppress(TaskFailed):  # not given back: the lease expires
                    yield from self.task(
                        "ReleaseSlotAfterFailure", lambda: self.admission_release(model, holder), request
                    )
            yield from self.transition(request)  # RecordImageFailure
            return status
        if self.config.admission:
            try:
                yield from self.task("ReleaseSlot", lambda: self.admission_release(model, holder), request)
            except TaskFailed:  # the Catch: KeepImageRecord (the image is kept, the lease expires)
                yield from self.transition(request)
        if request.first_image is None:
            request.first_image = self.env.now
        return status

    def branch(self, request: Request, index: int, lane: simpy.Resource) -> Process:
        with lane.request() as turn:
            yield turn
            try:
                status = yield from self.image(request, holder_id(request.execution_name, index))
            except ExecutionTimedOut:  # the execution ended: its branch stops where it was
                status = "TIMED_OUT"
            request.statuses.append(status)
            request.last_image = self.env.now

    def request(self, request: Request) -> Process:
        self.requests.append(request)
        # POST /jobs: StartExecution, botocore's 3 attempts on a throttle
        for attempt in range(1, 4):
            if self.starts.try_take(self.env.now):
                break
            self.start_throttled += 1
            if attempt == 3:
                request.refused = True
                return
            yield self.env.timeout(self.rng.random() * min(2 ** (attempt - 1), 20))
        yield self.env.timeout(self.est["start_execution_seconds"])
        request.started = self.env.now
        request.deadline = self.env.now + self.limits["execution_timeout_seconds"]["value"]
        request.start_time = (
            (START_OF_DAY + timedelta(seconds=self.env.now))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        try:
            yield from self.execution(request)
        except ExecutionTimedOut:
            request.timed_out = True
            request.ended = request.deadline

    def execution(self, request: Request) -> Process:
        try:
            yield from self.task(
                "ValidateRequest",
                lambda: self.invoke(
                    STEP_MB, lambda: self.sleep(self.cal["validate_request_seconds"]), "ValidateRequest"
                ),
                request,
            )
        except TaskFailed as failure:  # the Catch: PublishFailed, Failed; no image is made
            request.statuses = [f"FAILED:{failure.name}"] * request.images
            request.failed_step = "ValidateRequest"
            yield from self.transition(request)
            yield from self.transition(request)
            request.last_image = request.ended = self.env.now
            return
        yield from self.transition(request)  # the Map
        lane = simpy.Resource(self.env, capacity=self.map_limit)
        branches = [self.env.process(self.branch(request, i, lane)) for i in range(request.images)]
        yield self.env.all_of(branches)
        if self.env.now >= request.deadline:
            raise ExecutionTimedOut()
        self.s3_gets += request.images  # BuildManifest's HeadObject per image
        self.s3_puts += 1  # the manifest
        try:
            yield from self.task(
                "BuildManifest",
                lambda: self.invoke(
                    STEP_MB, lambda: self.sleep(self.cal["build_manifest_seconds"]), "BuildManifest"
                ),
                request,
            )
        except TaskFailed:  # the Catch: the execution fails, its stored images stay in S3
            request.failed_step = "BuildManifest"
        yield from self.transition(request)  # PublishCompleted (or PublishFailed)
        yield from self.transition(request)  # Done
        request.ended = self.env.now

    # -- traffic --------------------------------------------------------------------------------

    def rate_at(self, t: float, bursts: list[float]) -> float:
        """Requests a second at time ``t`` (seconds since midnight)."""
        traffic = self.scenario["traffic"]
        hour = int(t // 3600) % 24
        rate = (
            traffic["peak_requests_per_hour"]
            * traffic["hourly_share_of_peak"][hour]
            / 3600
            * self.config.load
        )
        burst = traffic["bursts"]
        if any(b <= t < b + burst["minutes"] * 60 for b in bursts):
            rate *= burst["rate_multiplier"]
        return rate

    def arrivals(self, end: float, bursts: list[float]) -> Process:
        """A Poisson process whose rate follows the day (thinning against the highest rate)."""
        traffic = self.scenario["traffic"]
        top = (
            traffic["peak_requests_per_hour"] / 3600 * self.config.load * traffic["bursts"]["rate_multiplier"]
        )
        weights = traffic["images_per_request"]["weights"]
        counts, count_weights = [int(k) for k in weights], list(weights.values())
        names = list(self.models)
        shares = [self.models[n].share for n in names]
        rid = 0
        while True:
            yield self.env.timeout(self.traffic_rng.expovariate(top))
            if self.env.now >= end:
                return
            if self.traffic_rng.random() * top > self.rate_at(self.env.now, bursts):
                continue
            rid += 1
            request = Request(
                rid,
                self.traffic_rng.choices(names, shares)[0],
                self.traffic_rng.choices(counts, count_weights)[0],
                self.env.now,
                f"{rid:0{EXECUTION_NAME_LENGTH}d}",
            )
            self.env.process(self.request(request))

    def sampler(self) -> Process:
        """Every second: per model, whether branches wait (saturated) and how busy the quota is."""
        while True:
            for name, spec in self.models.items():
                if self.waiting[name] > 0:
                    self.saturated_seconds[name] += 1
                    self.saturated_busy[name] += self.in_flight[name] / spec.quota
                if self.config.admission:
                    item = self.store._item(name)
                    if item.in_use > spec.quota or item.in_use != len(item.leases):
                        self.slot_violations += 1
                    self.tickets_peak[name] = max(self.tickets_peak[name], len(self.store._queue(name)))
            yield self.env.timeout(1.0)

    def run(self, bursts: list[float]) -> None:
        start = self.config.start_hour * 3600
        end = start + self.config.hours * 3600
        self.env.process(self.arrivals(end, bursts))
        self.env.process(self.sampler())
        if self.config.admission:
            self.env.process(self.keeper())
        # run until every request that arrived has ended (the sampler never ends: stop when idle)
        hour = start
        while hour < end:  # an hour at a time, saying how far it got
            hour = min(end, hour + 3600)
            self.env.run(until=hour)
            if self.config.hours >= 2:
                print(f"    {hour / 3600:.0f}:00  {len(self.requests)} requests so far", flush=True)
        while any(r.ended is None and not r.refused for r in self.requests):
            self.env.run(until=self.env.now + 60)
        self.ended_at = self.env.now
        self.left_when_ended = self.leftover()
        # then the keeper's rounds until every lease left by a stopped execution has expired and been
        # reclaimed (a live branch never leaves one), at most a lease's life and two rounds
        drain_until = self.env.now + DEFAULT_LEASE_SECONDS + 2 * self.keeper_interval
        while (
            self.config.admission
            and self.env.now < drain_until
            and any(self.store._item(name).leases for name in self.models)
        ):
            self.env.run(until=self.env.now + self.keeper_interval)

    def leftover(self) -> dict[str, dict[str, int]]:
        """Per model: slots counted in use, leases held and tickets in the queue."""
        return {
            name: {
                "in_use": self.store._item(name).in_use,
                "leases": len(self.store._item(name).leases),
                "tickets": len(self.store._queue(name)),
            }
            for name in self.models
        }

    # -- the report -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        done = [r for r in self.requests if not r.refused]
        statuses: dict[str, int] = defaultdict(int)
        for r in done:
            for s in r.statuses:
                statuses[s] += 1
        first = [r.first_image - r.arrival for r in done if r.first_image is not None]
        last = [r.last_image - r.arrival for r in done if r.last_image is not None]
        requested = sum(r.images for r in self.requests)
        generated = statuses.get("SUCCEEDED", 0)
        seconds = self.config.hours * 3600
        per_model: dict[str, Any] = {}
        for name, spec in self.models.items():
            made = sum(r.statuses.count("SUCCEEDED") for r in done if r.model == name)
            mean_latency = spec.median * math.exp(spec.sigma**2 / 2)
            slots, waiters = ("slots", name), ("waiters", name)
            at_most = {
                (kind, part): max(self.store.units[kind].get(part, {}).values(), default=0)
                for kind in ("write", "read")
                for part in (slots, waiters)
            }
            per_model[name] = {
                "quota_in_flight": spec.quota,
                "images_requested": sum(r.images for r in self.requests if r.model == name),
                "images_generated": made,
                "images_throttled": sum(r.statuses.count("THROTTLED") for r in done if r.model == name),
                "calls": self.bedrock_calls[name],
                "calls_refused": self.bedrock_refused[name],
                "calls_in_flight_at_most": self.in_flight_peak[name],
                "quota_capacity_images_per_second": round(spec.quota / mean_latency, 2),
                "images_per_second_over_the_run": round(made / seconds, 2),
                "share_of_quota_used_over_the_run": round(
                    self.model_seconds[name] / (spec.quota * seconds), 3
                ),
                "saturated_seconds": self.saturated_seconds[name],
                "share_of_quota_busy_while_branches_wait": (
                    round(self.saturated_busy[name] / self.saturated_seconds[name], 3)
                    if self.saturated_seconds[name]
                    else None
                ),
                "waiting_branches_at_most": self.waiting_peak[name],
                "wait_seconds": _stats(self.waited[name]) if self.config.admission else None,
                "tickets_at_most": self.tickets_peak[name],
                "slots_item_bytes_at_most": self.store.max_bytes.get(name, 0),
                "slots_item_write_units_per_second_at_most": at_most["write", slots],
                "slots_item_read_units_per_second_at_most": at_most["read", slots],
                "slots_item_requests_throttled": self.store.throttled.get(slots, 0),
                "slots_item_requests_refused_after_retries": self.store.refused.get(slots, 0),
                "slots_item_writes_refused_too_large": self.store.too_large.get(name, 0),
                "ticket_item_bytes": ticket_bytes(name, self.store.token_characters),
                "waiters_partition_write_units_per_second_at_most": at_most["write", waiters],
                "waiters_partition_read_units_per_second_at_most": at_most["read", waiters],
                "waiters_partition_requests_throttled": self.store.throttled.get(waiters, 0),
                "waiters_partition_requests_refused_after_retries": self.store.refused.get(waiters, 0),
                "first_image_seconds": _stats(
                    [r.first_image - r.arrival for r in done if r.model == name and r.first_image]
                ),
                "last_image_seconds": _stats(
                    [r.last_image - r.arrival for r in done if r.model == name and r.last_image]
                ),
            }
        cost = self.cost(generated)
        leftover = self.leftover()
        peak_transitions = max(self.transitions_per_second.values(), default=0)
        return {
            "admission_control": self.config.admission,
            "release_after_model_call": self.config.release_after_model_call,
            "load": self.config.load,
            "quota_multiplier": self.config.quota_multiplier,
            "dynamodb_partition_limits_multiplier_what_if": self.config.dynamodb_multiplier,
            "simulated_hours": self.config.hours,
            "start_hour": self.config.start_hour,
            "requests": len(self.requests),
            "requests_refused_start_execution": sum(1 for r in self.requests if r.refused),
            "images_of_refused_requests": sum(r.images for r in self.requests if r.refused),
            "images_requested": requested,
            "images": dict(sorted(statuses.items())),
            "images_generated": generated,
            "images_throttled": statuses.get("THROTTLED", 0),
            "images_failed_other": sum(
                v for k, v in statuses.items() if k.startswith("FAILED") or k == "TIMED_OUT"
            ),
            "first_image_seconds": _stats(first),
            "last_image_seconds": _stats(last),
            "executions_failed": {
                step: sum(1 for r in done if r.failed_step == step)
                for step in ("ValidateRequest", "BuildManifest")
            },
            "executions_timed_out": sum(1 for r in done if r.timed_out),
            "per_model": per_model,
            "lambda": {
                "concurrency_at_most": self.lambda_peak,
                "concurrency_by_function_at_that_moment": dict(sorted(self.function_at_peak.items())),
                "throttled_by_function": dict(sorted(self.function_throttled.items())),
                "account_limit": self.lambda_limit,
                "invocations": self.lambda_requests,
                "throttled_invocations": self.lambda_throttled,
            },
            "step_functions": {
                "state_transitions": self.transitions_total,
                "state_transitions_per_second_at_most": peak_transitions,
                "refill_per_second": self.limits["step_functions_state_transitions"]["refill_per_second"],
                "transitions_delayed_by_throttling": self.transitions_delayed,
                "start_execution_throttled_attempts": self.start_throttled,
                "no_slot_answers": self.no_slot_answers,
                "acquire_slot_timeouts": self.acquire_timeouts,
                "send_task_success_calls": self.send_task_calls,
                "send_task_success_per_second_at_most": max(self.send_task_per_second.values(), default=0),
                "send_task_success_delayed_by_its_api_rate": self.send_task_delayed,
                "send_task_success_refill_per_second": self.limits["step_functions_send_task_success"][
                    "refill_per_second"
                ],
                "send_task_success_dead_tokens": self.dead_tokens,
            },
            "admission": {
                "early_hand_offs_failed": self.early_release_failed_count,
                "keeper_rounds": self.keeper_rounds,
                "keeper_rounds_failed": self.keeper_failed,
                "dynamodb_requests": self.store.requests,
                "dynamodb_write_units": round(self.store.total_units["write"], 1),
                "dynamodb_read_units": round(self.store.total_units["read"], 1),
                "left_when_the_last_execution_ended": getattr(self, "left_when_ended", None),
            }
            if self.config.admission
            else None,
            "slots_left_at_end": leftover,
            "slot_count_above_quota_samples": self.slot_violations,
            "cost": cost,
        }

    def cost(self, generated: int) -> dict[str, Any]:
        p = self.prices.service
        model = sum(
            self.models[r.model].price * r.statuses.count("SUCCEEDED") for r in self.requests if not r.refused
        )
        parts = {
            "model": model,
            "step_functions": self.transitions_total * p("stepfunctions_standard_per_state_transition"),
            "lambda": self.lambda_requests * p("lambda_per_request")
            + self.lambda_gb_seconds * p("lambda_arm64_per_gb_second"),
            "admission_dynamodb": self.store.total_units["write"]
            * p("dynamodb_on_demand_per_write_request_unit")
            + self.store.total_units["read"] * p("dynamodb_on_demand_per_read_request_unit"),
            "s3": self.s3_puts * p("s3_put_per_request") + self.s3_gets * p("s3_get_per_request"),
        }
        per_thousand = {k: round(v / generated * 1000, 4) if generated else None for k, v in parts.items()}
        total = sum(parts.values())
        return {
            "prices": self.prices.reference(),
            "per_1000_images_generated": per_thousand,
            "total_per_1000_images": round(total / generated * 1000, 4) if generated else None,
            "workflow_per_1000_images": round((total - model) / generated * 1000, 4) if generated else None,
        }


def _stats(values: Iterable[float]) -> dict[str, Any] | None:
    data = sorted(values)
    if not data:
        return None
    return {
        "n": len(data),
        "p50": round(percentile(data, 50), 2),
        "p99": round(percentile(data, 99), 2),
        "max": round(data[-1], 2),
    }


def burst_times(scenario: dict[str, Any], seed: int) -> list[float]:
    """The day's bursts: seeded start times between 08:00 and 22:00, the same for every variant."""
    rng = random.Random(seed * 7919)
    burst = scenario["traffic"]["bursts"]
    return sorted(rng.uniform(8 * 3600, 22 * 3600 - burst["minutes"] * 60) for _ in range(burst["per_day"]))


def simulate(
    config: Config, scenario: dict[str, Any], calibration: dict[str, Any], bursts: list[float]
) -> dict[str, Any]:
    deployment = Deployment(config, scenario, calibration)
    began = time.perf_counter()
    deployment.run(bursts)
    result = deployment.report()
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return result


def next_limits(run: dict[str, Any], scenario: dict[str, Any]) -> list[str]:
    """What a run reached or passed, in the order it matters (from the run's own figures)."""
    found = []
    limits = scenario["limits"]
    lam = run["lambda"]
    if lam["throttled_invocations"] or lam["concurrency_at_most"] >= 0.8 * lam["account_limit"]:
        found.append(
            f"Lambda concurrency: {lam['concurrency_at_most']} of {lam['account_limit']} at most, "
            f"{lam['throttled_invocations']} invocations throttled"
        )
    sfn = run["step_functions"]
    if (
        sfn["transitions_delayed_by_throttling"]
        or sfn["state_transitions_per_second_at_most"] >= 0.8 * sfn["refill_per_second"]
    ):
        found.append(
            f"Step Functions state transitions: {sfn['state_transitions_per_second_at_most']}/s at most against a "
            f"refill of {sfn['refill_per_second']}/s; {sfn['transitions_delayed_by_throttling']} delayed"
        )
    if sfn["start_execution_throttled_attempts"]:
        found.append(f"StartExecution: {sfn['start_execution_throttled_attempts']} attempts throttled")
    if sfn["send_task_success_delayed_by_its_api_rate"]:
        found.append(
            f"SendTaskSuccess: {sfn['send_task_success_delayed_by_its_api_rate']} calls waited for its API bucket "
            f"(refill {sfn['send_task_success_refill_per_second']}/s)"
        )
    wcu = limits["dynamodb_partition_write_units_per_second"]["value"]
    rcu = limits["dynamodb_partition_read_units_per_second"]["value"]
    for name, m in run["per_model"].items():
        for part, label in (("slots_item", "slots item"), ("waiters_partition", "queue (waiters partition)")):
            writes = m.get(f"{part}_write_units_per_second_at_most", 0)
            reads = m.get(f"{part}_read_units_per_second_at_most", 0)
            throttled = m.get(f"{part}_requests_throttled", 0)
            if writes >= 0.5 * wcu or reads >= 0.5 * rcu or throttled:
                found.append(
                    f"DynamoDB partition of {name}'s {label}: {writes} write units/s at most of {wcu}, {reads} read "
                    f"units/s of {rcu}; {throttled} requests throttled, "
                    f"{m.get(f'{part}_requests_refused_after_retries', 0)} refused after botocore's attempts"
                    + (
                        f" (the item reached {m['slots_item_bytes_at_most']} bytes)"
                        if part == "slots_item"
                        else ""
                    )
                )
        if m["slots_item_bytes_at_most"] >= 0.5 * limits["dynamodb_item_bytes"]["value"]:
            found.append(
                f"DynamoDB item size of {name}'s slots: {m['slots_item_bytes_at_most']} bytes of 409,600"
            )
        if m["saturated_seconds"] > 60:
            found.append(
                f"Bedrock quota of {name}: branches waited for a slot during {m['saturated_seconds']} s, "
                f"up to {m['waiting_branches_at_most']} at once"
            )
        if m["calls_refused"]:
            found.append(
                f"Bedrock quota of {name}: {m['calls_refused']} of {m['calls']} calls refused (ThrottlingException), "
                f"{m['images_throttled']} images THROTTLED"
            )
    failed = run["executions_failed"]
    if any(failed.values()):
        found.append(f"executions failed in ValidateRequest / BuildManifest: {failed}")
    if run["executions_timed_out"]:
        found.append(f"{run['executions_timed_out']} executions TIMED_OUT (30-minute TimeoutSeconds)")
    if sfn["acquire_slot_timeouts"]:
        found.append(
            f"AcquireSlot's TimeoutSeconds: {sfn['acquire_slot_timeouts']} waits of 300 s asked again (States.Timeout)"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, help="simulate this many minutes from --start-hour (a smoke run)"
    )
    parser.add_argument("--start-hour", type=float, default=15.0)
    parser.add_argument(
        "--load", type=float, default=1.0, help="a multiple of the scenario's traffic (smoke runs)"
    )
    parser.add_argument("--quota-multiplier", type=float, default=1.0, help="scale every quota (smoke runs)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dynamodb-multiplier",
        type=float,
        default=1.0,
        help="a what-if: every DynamoDB partition takes this many times its documented units a second "
        "(to see the limit after the partitions'); the result file's name says so",
    )
    parser.add_argument(
        "--hold-across-upload", action="store_true", help="model the slot held until ReleaseSlot"
    )
    parser.add_argument(
        "--plans",
        choices=("all", "day", "peak1x", "peak10x"),
        default="all",
        help="which runs (day: 24 h at 1x; peak1x: 14:00-15:00 at 1x, a burst at 14:20 included; "
        "peak10x: 15:00-15:05 at 10x, quotas 10x); "
        "writes results/simulation.json, or simulation_<plans>.json for one part",
    )
    parser.add_argument(
        "--variants",
        choices=("both", "with", "without"),
        default="both",
        help="with and/or without admission control",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    scenario = json.loads(SCENARIO.read_text())
    started, load_start = time.perf_counter(), load_average()
    calibration = calibrate(samples=20 if args.minutes else 60)
    bursts = burst_times(scenario, args.seed)
    release_early = not args.hold_across_upload
    runs: dict[str, Any] = {}
    if args.minutes:
        plans = [
            (
                f"smoke_{label}",
                Config(
                    on,
                    args.load,
                    args.start_hour,
                    args.minutes / 60,
                    args.seed,
                    release_early,
                    args.quota_multiplier,
                ),
            )
            for label, on in (("with_admission", True), ("without_admission", False))
        ]
    else:
        day = [
            ("day_with_admission", Config(True, 1.0, 0.0, 24.0, args.seed, release_early)),
            ("day_without_admission", Config(False, 1.0, 0.0, 24.0, args.seed, release_early)),
        ]
        peak = [
            (
                "peak_10x_with_admission",
                Config(True, 10.0, 15.0, PEAK_WINDOW_HOURS, args.seed, release_early, 10.0),
            ),
            (
                "peak_10x_without_admission",
                Config(False, 10.0, 15.0, PEAK_WINDOW_HOURS, args.seed, release_early, 10.0),
            ),
        ]
        peak1x = [
            (f"peak_hour_{label}", Config(on, 1.0, 14.0, 1.0, args.seed, release_early))
            for label, on in (("with_admission", True), ("without_admission", False))
        ]
        plans = {"all": peak1x + peak + day, "day": day, "peak1x": peak1x, "peak10x": peak}[args.plans]
    wanted = {"both": (True, False), "with": (True,), "without": (False,)}[args.variants]
    plans = [(name, config) for name, config in plans if config.admission in wanted]
    if args.dynamodb_multiplier != 1.0:
        plans = [
            (
                f"{name}_dynamodb_x{args.dynamodb_multiplier:g}",
                replace(config, dynamodb_multiplier=args.dynamodb_multiplier),
            )
            for name, config in plans
        ]
    for name, config in plans:
        print(f"{name}: load {config.load}x, {config.hours} h from {config.start_hour}:00 ...", flush=True)
        runs[name] = simulate(config, scenario, calibration, bursts)
        runs[name]["next_limits"] = next_limits(runs[name], scenario)
        r = runs[name]
        print(
            f"  {r['requests']} requests, {r['images_requested']} images: generated {r['images_generated']}, "
            f"throttled {r['images_throttled']}, failed {r['images_failed_other']}; first image p50/p99 "
            f"{(r['first_image_seconds'] or {}).get('p50')}/{(r['first_image_seconds'] or {}).get('p99')} s, last "
            f"{(r['last_image_seconds'] or {}).get('p50')}/{(r['last_image_seconds'] or {}).get('p99')} s; "
            f"{r['cost']['total_per_1000_images']} $/1,000 images; {r['wall_seconds']} s",
            flush=True,
        )
        for line in r["next_limits"]:
            print(f"    limit: {line}", flush=True)
    ctx = RunContext(quick=bool(args.minutes), latency=0.0, repeats=1, results_dir=args.results_dir)
    write_result(
        ctx,
        ("simulation" if args.minutes or args.plans == "all" else f"simulation_{args.plans}")
        + (f"_dynamodb_x{args.dynamodb_multiplier:g}" if args.dynamodb_multiplier != 1.0 else ""),
        {
            "scenario_file": "benchmarks/simulation_scenario.json",
            "scenario": scenario,
            "bursts_start_seconds": [round(b) for b in bursts],
            "calibration": calibration,
            "algorithm": "image_pipeline.core.admission.Semaphore (acquire, release, release_after_call, sweep) "
            "over imagegen.testing.memory_slots.MemorySlotStore, AcquireSlot waiting on its task token",
            "retry_policies_from": "statemachine/generate_images.asl.json (Retry and TimeoutSeconds)",
            "estimated": (
                "model latencies, quotas in flight, traffic shape, Step Functions' time between states, Lambda's "
                "invocation overhead, DynamoDB's round trip, SendTaskSuccess's answer, an S3 request, the S3 "
                "upload and a task token's length (scenario 'estimates' and each model's note); measured "
                "offline: the handlers' own time (calibration)"
            ),
            "runs": runs,
        },
        started=started,
        load_start=load_start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

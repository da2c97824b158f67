"""How long each function's AWS calls can take at worst, from the numbers its clients are built with.

Every client of the Lambda package (:mod:`image_pipeline.core.clients`) is built from a
:class:`ClientTimeouts` of this module: an explicit connect timeout, read timeout and number of
attempts in botocore's ``standard`` retry mode. Its worst case is then a number::

    attempts x (connect timeout + read timeout) + the longest backoff between the attempts

and a function's worst case is the sum of its calls' worst cases plus a margin for its own code.
``tests/infra/test_time_budget.py`` checks, from the synthesized template, the ASL files, the settings'
defaults and the CDK context, that each worst case fits in its function's timeout and each function's
timeout in its Task state's ``TimeoutSeconds``; the workflow construct checks the Bedrock part again at
synthesis (``imagegen:bedrockMaxAttempts`` is CDK context). So a hung model call ends as ``ModelTimeout``
(named, retried by the state machine), never as a Lambda or state timeout (generic, and billed again).

Facts this relies on (read 2026-11-30):

* botocore 1.44.8, ``botocore/retries/standard.py`` (``ExponentialBackoff.delay_amount``): the delay
  before retry *i* (1-based) is ``rand(0, 1) x min(base x 2**(i-1), 20 s)``, base 1 s for throttling
  errors and 50 ms otherwise; an ``x-amz-retry-after`` header can raise it to at most that + 5 s.
  ``ReadTimeoutError`` and ``ConnectTimeoutError`` are retried. So :func:`retry_backoff_bound`.
* botocore ``Config``: ``connect_timeout`` and ``read_timeout`` default to 60 s, and the retry mode and
  attempts may differ in an older SDK (the boto3 guide still says legacy mode, 5 attempts:
  https://docs.aws.amazon.com/boto3/latest/guide/retries.html), so every client sets all of them.
  A read timeout bounds each socket read, not a whole answer: the bound assumes an answer is not
  trickled byte by byte (Bedrock and S3 answer in one piece once ready).
* Lambda's Init phase "is limited to 10 seconds"; when it is not done by then, it is retried at the
  first invocation within the function's timeout
  (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). A Task state can
  therefore see up to 10 s more than the function's timeout: :data:`LAMBDA_INIT_SECONDS`.
* API Gateway's REST integration timeout: 50 ms to 29 s
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html).
* "Lambda allocates CPU power in proportion to the amount of memory configured. ... At 1,769 MB, a
  function has the equivalent of one vCPU (one vCPU-second of credits per second)."
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html): :data:`LAMBDA_MB_PER_VCPU`.
  The inpaint mask check (:mod:`image_pipeline.core.png_pixels`, pure Python, one thread) is CPU-bound,
  so its time scales with ``LAMBDA_MB_PER_VCPU / memory`` below one vCPU: :func:`mask_check_seconds`.

No AWS page states how long the image models take; :data:`image_pipeline.core.settings.Settings`'
``bedrock_read_timeout_seconds`` (60 s, botocore's own default) is several times what a 1024 x 1024
image takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from image_pipeline.core.admission import (
    EARLY_HAND_OFF_TICKETS,
    FORGET_LEASES,
    HAND_OFF_TICKETS,
    RECLAIMS_PER_STEP,
    RECOUNT_PAGES,
    SWEEP_DROPS,
    SWEEP_LOOKUPS,
    SWEEP_RECLAIMS,
    SWEEP_WAKES,
)
from image_pipeline.core.settings import Settings
from image_pipeline.models.image_limits import EDIT_IMAGE

#: botocore's standard mode: longest backoff step, throttling base, and what x-amz-retry-after may add.
MAX_BACKOFF_SECONDS = 20.0
THROTTLING_BASE_SECONDS = 1.0
RETRY_AFTER_EXTRA_SECONDS = 5.0
#: What a Task state may wait for a function beyond its timeout: Lambda's Init phase limit.
LAMBDA_INIT_SECONDS = 10
#: A function's own work besides its AWS calls (decoding and checking a PNG, JSON, threads), at most.
CODE_SECONDS = 10
#: API Gateway's longest REST integration (without a quota increase): the HTTP API function's timeout.
API_GATEWAY_INTEGRATION_SECONDS = 29
#: Lambda's memory for one vCPU (more memory gives more vCPUs, which one thread of Python cannot use).
LAMBDA_MB_PER_VCPU = 1769
#: The mask check's CPU time per pixel on one full core, at most: ``benchmarks/mask_check.py`` measured
#: 0.88 us (RGBA, every row Paeth-filtered: the slowest a PNG can be made to decode) on this project's
#: build machine (``benchmarks/results/mask_check.json``); 1 us leaves about 14 % for a slower core.
MASK_CHECK_CORE_SECONDS_PER_PIXEL = 1.0e-6
#: The largest mask checked: a mask is checked only when it is the size of a source image that passed
#: its model's limits (core/refine.py), and the largest source any model takes is the Stability Image
#: Services' 9,437,184 pixels (tests/infra/test_time_budget.py checks that against every model).
LARGEST_MASK_PIXELS = EDIT_IMAGE.max_pixels or 0
#: What the HTTP API function needs after its wait for a synchronous run (answer, presign URLs).
SYNC_ANSWER_SECONDS = 1


def retry_backoff_bound(attempts: int) -> float:
    """The longest botocore's standard mode can sleep in total between ``attempts`` attempts."""
    return sum(
        min(THROTTLING_BASE_SECONDS * 2 ** (i - 1), MAX_BACKOFF_SECONDS) + RETRY_AFTER_EXTRA_SECONDS
        for i in range(1, attempts)
    )


@dataclass(frozen=True)
class ClientTimeouts:
    """The timeouts (seconds) and total attempts a client is built with."""

    connect: float
    read: float
    attempts: int

    @property
    def worst_case_seconds(self) -> float:
        """One call, every attempt timing out, the longest backoff between them."""
        return self.attempts * (self.connect + self.read) + retry_backoff_bound(self.attempts)

    def describe(self) -> str:
        return (
            f"{self.attempts} attempts x ({self.connect:g} s connect + {self.read:g} s read) "
            f"+ {retry_backoff_bound(self.attempts):g} s backoff = {self.worst_case_seconds:g} s"
        )


#: S3 (PutObject of an image or manifest, HeadObject, GetObject): five attempts, as S3 asks clients to
#: retry its 500/503s.
S3 = ClientTimeouts(connect=3, read=10, attempts=5)
#: Step Functions' short calls (StartExecution, DescribeExecution, GetExecutionHistory): two attempts,
#: so that a ``POST /jobs`` fits in API Gateway's 29 s (a retried StartExecution is harmless: the
#: execution name makes it idempotent).
STEPFUNCTIONS = ClientTimeouts(connect=2, read=5, attempts=2)
#: DescribeExecution while a synchronous route waits for its job: one short attempt (a poll that fails
#: is simply made again at the wait's next step, ``image_pipeline.core.job_control``).
STEPFUNCTIONS_POLL = ClientTimeouts(connect=1, read=2, attempts=1)
#: Admission control's calls (``image_pipeline.core.admission``): DynamoDB's conditional writes and
#: consistent reads of the slots and the queue, the cancellation marker's HeadObject. One short attempt
#: each: every step is conditional, so a failed one is simply run again by the state machine's Retry
#: (``AcquireSlot``, ``ReleaseSlot``), and a hand-off's worst case stays bounded.
ADMISSION_DYNAMODB = ClientTimeouts(connect=0.5, read=0.5, attempts=1)
#: ``SendTaskSuccess`` waking a waiting branch: one short attempt (a failure puts the ticket back).
ADMISSION_NOTIFY = ClientTimeouts(connect=1, read=2, attempts=1)
#: GenerateImage's hand-off of its slot right after the model's answer uses the same clients; a
#: failure is logged and ``ReleaseSlot``, the next state, does it.
ADMISSION_EARLY_RELEASE = ADMISSION_DYNAMODB
#: DynamoDB (the image index, core/image_index.py): one short attempt. A failed index write is logged and
#: counted, a failed cache lookup is a cache miss: neither is worth the image's time budget.
INDEX_DYNAMODB = ClientTimeouts(connect=1, read=1, attempts=1)
#: Queueing an image's webhook delivery as the image is stored (core/webhooks.queue_image_delivery): the
#: record's conditional PutObject, SQS SendMessage, and the record's DeleteObject when the message was
#: not sent; one short attempt each (a delivery not queued then is queued by the job's end).
WEBHOOK_QUEUEING = ClientTimeouts(connect=0.5, read=1.5, attempts=1)

#: DynamoDB (the daily spend ledger, core/spend.py): one short attempt. A reservation that fails is a 503
#: (the ceiling fails closed: the client tries again), a settle that fails leaves the estimate counted.
#: One attempt keeps ``POST /jobs`` (a reservation, StartExecution, a release) within 29 s.
LEDGER_DYNAMODB = ClientTimeouts(connect=1, read=1, attempts=1)
#: The ledger's calls on a start: the caller's ceiling (GetItem), the reservation (UpdateItem), and the
#: release when the start was refused (UpdateItem); on a settle: a GetItem and an UpdateItem.
LEDGER_CALLS_TO_START = 3
LEDGER_CALLS_TO_SETTLE = 2

#: Bedrock Runtime's connect timeout; its read timeout and attempts are settings.
BEDROCK_CONNECT_SECONDS = 5


def bedrock(settings: Settings) -> ClientTimeouts:
    """The Bedrock Runtime client's timeouts under ``settings``."""
    return ClientTimeouts(
        connect=BEDROCK_CONNECT_SECONDS,
        read=settings.bedrock_read_timeout_seconds,
        attempts=settings.bedrock_max_attempts,
    )


#: Takes tried by an acquire (``Semaphore.attempts``).
ADMISSION_TAKE_ATTEMPTS = 3
#: Calls of admission control's steps (``core/admission.py``, counted from the code, and by
#: tests/unit/test_admission_calls.py; the waiting counter's update is one more call after a claim, an
#: enqueue or a requeue): a ticket of a hand-off: a page of the queue, the claim (2), the cancellation
#: lookup, the hand-over;
ADMISSION_CALLS_PER_TICKET = 5
#: a round of fill: a page, a read, the claim (2), the lookup, the take, then a requeue (2) or a
#: give-back (the reclaims come on top);
ADMISSION_CALLS_PER_FILL_ROUND = 8
#: undoing a refused wake-up (then the step raises): a give-back and a requeue (2).
ADMISSION_CALLS_TO_UNDO = 3


def admission_hand_off_bound(*, fill: bool, tickets: int = HAND_OFF_TICKETS) -> float:
    """One release (``core/admission.Semaphore.release``): a read, at most ``tickets`` tickets each
    claimed, looked up, handed the slot and woken, then a give-back; with ``fill``, at most
    ``HAND_OFF_TICKETS`` rounds of fill, each with its reclaims and a wake-up; and one undo."""
    call = ADMISSION_DYNAMODB.worst_case_seconds
    wake = ADMISSION_NOTIFY.worst_case_seconds
    pass_on = call + tickets * (ADMISSION_CALLS_PER_TICKET * call + wake) + call
    per_round = (ADMISSION_CALLS_PER_FILL_ROUND + RECLAIMS_PER_STEP) * call + wake
    rounds = HAND_OFF_TICKETS * per_round if fill else 0.0
    return pass_on + rounds + ADMISSION_CALLS_TO_UNDO * call


def admission_acquire_bound() -> float:
    """An acquire: its takes with their reclaims; then either its own wake-up and, if its branch no longer
    waits, a full release; or the cancellation lookup (and a wake-up), the enqueue (2) and a fill."""
    call = ADMISSION_DYNAMODB.worst_case_seconds
    wake = ADMISSION_NOTIFY.worst_case_seconds
    takes = ADMISSION_TAKE_ATTEMPTS * (1 + RECLAIMS_PER_STEP) * call
    granted = wake + admission_hand_off_bound(fill=True)
    fill_only = admission_hand_off_bound(fill=True) - admission_hand_off_bound(fill=False)
    queued = call + wake + 2 * call + fill_only + ADMISSION_CALLS_TO_UNDO * call
    return takes + max(granted, queued)


def admission_sweep_bound() -> float:
    """One model's keeper round: two reads to see whether it has anything to keep, a read and
    ``SWEEP_RECLAIMS`` give-backs, a fill, a page of tickets, ``SWEEP_DROPS`` claims (2) of stale tickets,
    ``SWEEP_LOOKUPS`` lookups, ``SWEEP_WAKES`` claims (2) and wake-ups, the recount (a read,
    ``RECOUNT_PAGES`` pages and a write), and the metrics' reads."""
    call = ADMISSION_DYNAMODB.worst_case_seconds
    wake = ADMISSION_NOTIFY.worst_case_seconds
    fill_only = admission_hand_off_bound(fill=True) - admission_hand_off_bound(fill=False)
    reclaims = call + SWEEP_RECLAIMS * call
    tickets = call + SWEEP_DROPS * 2 * call + SWEEP_LOOKUPS * call + SWEEP_WAKES * (2 * call + wake)
    recount = (1 + RECOUNT_PAGES + 1) * call  # the counter read, the pages, the counter's write
    return 2 * call + reclaims + fill_only + ADMISSION_CALLS_TO_UNDO * call + tickets + recount + 2 * call


def admission_forget_bound() -> float:
    """One model's part of forgetting an ended execution: a read, ``FORGET_LEASES`` give-backs, a page
    of tickets and ``SWEEP_DROPS`` claims (2), a fill."""
    call = ADMISSION_DYNAMODB.worst_case_seconds
    fill_only = admission_hand_off_bound(fill=True) - admission_hand_off_bound(fill=False)
    return (
        call
        + FORGET_LEASES * call
        + call
        + SWEEP_DROPS * 2 * call
        + fill_only
        + ADMISSION_CALLS_TO_UNDO * call
    )


def admission_bound() -> float:
    """The Admission function: an acquire, a release with its fill, one model's keeper round or one
    model's part of forgetting an ended execution (both stop before a model they have no time left
    for), and its own code."""
    worst = max(
        admission_acquire_bound(),
        admission_hand_off_bound(fill=True),
        admission_sweep_bound(),
        admission_forget_bound(),
    )
    return worst + CODE_SECONDS


def generate_image_bound(settings: Settings) -> float:
    """``generate_image``: a cache lookup, one InvokeModel (or none: a cache hit), the release of its
    admission slot right after it, one PutObject (or CopyObject), its index item, its image webhook (a
    record's PutObject, SendMessage, DeleteObject), its own code."""
    return (
        bedrock(settings).worst_case_seconds
        + admission_hand_off_bound(fill=False, tickets=EARLY_HAND_OFF_TICKETS)
        + S3.worst_case_seconds
        + 2 * INDEX_DYNAMODB.worst_case_seconds
        + 3 * WEBHOOK_QUEUEING.worst_case_seconds
        + CODE_SECONDS
    )


def build_manifest_bound(settings: Settings, *, head_workers: int) -> float:
    """``build_manifest``: a HeadObject per image on ``head_workers`` threads (so ``ceil(images /
    workers)`` in a row), one PutObject of the manifest, the settle of its spend, its own code
    (presigning is local)."""
    rounds = math.ceil(settings.max_images_per_request / head_workers)
    return (
        (rounds + 1) * S3.worst_case_seconds
        + LEDGER_CALLS_TO_SETTLE * LEDGER_DYNAMODB.worst_case_seconds
        + CODE_SECONDS
    )


def sync_wait_margin() -> float:
    """What the HTTP API function keeps of its time when it waits for a synchronous route's job: the
    last DescribeExecution, which may start just before the wait ends, and the answer."""
    return STEPFUNCTIONS_POLL.worst_case_seconds + SYNC_ANSWER_SECONDS


def longest_sync_wait(seconds_left: float) -> float:
    """The longest a synchronous route may wait for its job with ``seconds_left`` of its function's
    time (or of API Gateway's integration timeout), never less than 0."""
    return max(0.0, seconds_left - sync_wait_margin())


def sync_wait_bound(wait: float) -> float:
    """The HTTP API function's wait for a synchronous route's job (polls of :data:`STEPFUNCTIONS_POLL`)
    and its answer. The wait starts after ``StartExecution`` and the function shortens it by what that
    took (its context's remaining time), so this bounds the part after the start."""
    return wait + sync_wait_margin()


def start_job_bound() -> float:
    """The HTTP API function's ``POST /jobs``: the spend ledger's reservation (and release), one
    StartExecution and its answer."""
    return (
        LEDGER_CALLS_TO_START * LEDGER_DYNAMODB.worst_case_seconds
        + STEPFUNCTIONS.worst_case_seconds
        + SYNC_ANSWER_SECONDS
    )


def mask_check_seconds(memory_mb: int, pixels: int = LARGEST_MASK_PIXELS) -> float:
    """The inpaint mask check's worst case (seconds) for a mask of ``pixels`` in a function of
    ``memory_mb``: the CPU it takes on one full vCPU, stretched by the share of a vCPU the memory buys."""
    share = min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)
    return pixels * MASK_CHECK_CORE_SECONDS_PER_PIXEL / share


def validate_request_bound(memory_mb: int) -> float:
    """``validate_request``'s own code: the largest mask's check and the rest of its code (the S3
    reads of the stored images are not in it: see docs/decisions.md, "The mask check's time")."""
    return mask_check_seconds(memory_mb) + CODE_SECONDS


def over_budget(what: str, bound: float, timeout: float, detail: str) -> str | None:
    """A message when ``bound`` does not fit in ``timeout`` (seconds); None when it does."""
    if bound <= timeout:
        return None
    return f"{what} can take {bound:g} s at worst ({detail}), more than its {timeout:g} s timeout"

"""Shared pieces of the benchmarks: statistics, the Bedrock stand-in process, result files, and the
instruments that look inside one offline run (handler timings, AWS call counts, execution history,
a sampling profiler, and a switch for the engine's moto speed-ups, to measure moto as shipped beside them).

Every benchmark module imports this one; nothing here asserts a timing.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import linecache
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

#: The model the engine benchmarks ask for: Stable Image Core at 1:1, a 1024x1024 PNG per image, as seed
#: 001 and seed 000 get from the same server with their Titan bodies, so the server does the same work
#: per image for all three. (Titan Image v2 itself is past its end of life: the engine refuses it offline
#: as deployed, from the model facts file.)
ENGINE_MODEL = "stable-image-core"
PROMPT = "a red porsche on a mountain road at dawn"


def engine_request(count: int, seed: int) -> dict[str, Any]:
    """The request the engine benchmarks send: ``count`` 1024x1024 images of one prompt."""
    return {
        "prompt": PROMPT,
        "count": count,
        "model": ENGINE_MODEL,
        "aspect_ratio": "1:1",
        "seed": seed,
    }


# -- statistics ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, spread and quartiles of repeated measurements (seconds in, seconds out)."""
    if not values:
        raise ValueError("no values")
    median = statistics.median(values)
    return {
        "n": len(values),
        "median": round(median, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "p25": round(percentile(values, 25), 4),
        "p75": round(percentile(values, 75), 4),
        "mean": round(statistics.fmean(values), 4),
        # (max - min) / median: how far apart the repeats were, relative to the typical value
        "spread": round((max(values) - min(values)) / median, 4) if median else 0.0,
        "values": [round(v, 4) for v in values],
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


# -- the machine and the run -----------------------------------------------------------------------


def load_average() -> list[float]:
    """``os.getloadavg()`` (1, 5, 15 minutes), rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "packages": {
            name: _version(name)
            for name in (
                "moto",
                "jsonpath-ng",  # parse cost differs by version: 1.16 ships its parser tables, older ones build them
                "antlr4-python3-runtime",  # moto's ASL parser
                "boto3",
                "botocore",
                "aws-lambda-powertools",
                "pydantic",
                "pillow",
                "flask",
            )
        },
    }


@dataclass
class RunContext:
    """Settings shared by every part of one benchmark run."""

    quick: bool
    latency: float
    repeats: int
    results_dir: Path
    bedrock_url: str = ""
    log: Callable[[str], None] = print
    engine: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def write_result(
    ctx: RunContext, name: str, data: dict[str, Any], *, started: float, load_start: list[float]
) -> Path:
    """Write ``results/<name>.json``: the part's data plus the run's metadata."""
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "meta": {
            "quick": ctx.quick,
            "latency_seconds": ctx.latency,
            "repeats": ctx.repeats,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_seconds": round(time.perf_counter() - started, 2),
            "loadavg_start": load_start,
            "loadavg_end": load_average(),
            "machine": machine_info(),
        },
        **data,
    }
    path = ctx.results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


# -- the Bedrock stand-in, in its own process -------------------------------------------------------


class BedrockProcess:
    """``python -m imagegen.standin.bedrock_server`` with a fixed latency, in a child process.

    Out of process on purpose: in AWS the model runs elsewhere, so the stand-in's PNG rendering must
    not compete for this process's GIL with the workflow being measured. (``profile.py`` measures the
    engine's default, an in-process server, as a separate variant.)
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        command = [
            sys.executable,
            "-m",
            "imagegen.standin.bedrock_server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency",
            str(self.latency),
            "--quiet",
            # The peers send Titan Image v2 bodies, as the seeds they reproduce did before its end of
            # life; the server answers them instead of refusing a retired model (the engine asks for an
            # active one, ENGINE_MODEL).
            "--no-availability-checks",
        ]
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                break
            if " at http" in line:
                self.url = line.rsplit(" at ", 1)[1].strip()
                return self.url
        self.stop()
        raise RuntimeError("the offline Bedrock server did not start")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """The server's counters (``GET /__stats``)."""
        return self._call("GET", "/__stats")

    def reset_stats(self) -> None:
        self._call("DELETE", "/__stats")

    def __enter__(self) -> BedrockProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.cache
def _bedrock_client(url: str) -> Any:
    import boto3

    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="offline",
        aws_secret_access_key="offline",
    )


def direct_model_call(url: str, seed: int) -> float:
    """Seconds for one InvokeModel call straight to the server with a warm client: the floor of any
    design (latency + the stand-in's rendering + HTTP), since every image needs this call."""
    client = _bedrock_client(url)
    body = {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": PROMPT},
        "imageGenerationConfig": {"numberOfImages": 1, "width": 1024, "height": 1024, "seed": seed},
    }
    started = time.perf_counter()
    response = client.invoke_model(modelId="amazon.titan-image-generator-v2:0", body=json.dumps(body))
    json.loads(response["body"].read())
    return time.perf_counter() - started


# -- instruments on a running engine ---------------------------------------------------------------


class HandlerTimer:
    """Wraps the engine's Lambda router so that every handler invocation is timed.

    For ``imagegen-generate-image`` the record's ``model_latency_ms`` is kept too, so the handler's
    own time (duration minus the Bedrock call) can be told apart.
    """

    def __init__(self, engine: Any) -> None:
        self._router = engine.router
        self._original = self._router.invoke
        self._lock = threading.Lock()
        self.durations: dict[str, list[float]] = collections.defaultdict(list)
        self.model_seconds: list[float] = []
        self._router.invoke = self._invoke

    def _invoke(self, name: str, event: Any) -> tuple[int, str | None, bytes]:
        started = time.perf_counter()
        try:
            result = self._original(name, event)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.durations[name].append(elapsed)
        if name == "imagegen-generate-image" and result[1] is None:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                latency_ms = json.loads(result[2]).get("model_latency_ms")
                if latency_ms is not None:
                    with self._lock:
                        self.model_seconds.append(latency_ms / 1000)
        return result

    def reset(self) -> None:
        with self._lock:
            self.durations = collections.defaultdict(list)
            self.model_seconds = []

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            del self._router.invoke  # back to the class's method


class CallCounter:
    """Counts the AWS API calls made through boto3's default session (the handlers' S3 and Bedrock
    clients, the interpreter's EventBridge client), by ``service.Operation``.

    A client copies the session's event hooks when it is created, so the hook is also put on the
    handlers' cached clients (``image_pipeline.core.clients``) and on the interpreter's task clients
    that the engine's moto fixes keep (``engine.moto_fixes``), which exist already once a request ran;
    the same ``unique_id`` keeps it from being registered twice. Lambda ``Invoke`` is answered by the
    engine's router before this hook runs; count it with ``engine.router.invocations``.
    """

    def __init__(self, engine: Any) -> None:
        import boto3
        from image_pipeline.core import clients

        self._session = boto3._get_default_session()
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._id = f"bench-counter-{id(self)}"
        kept = engine.moto_fixes.reused_clients() if engine.moto_fixes is not None else []
        self._emitters = [
            self._session.events,
            clients.s3().meta.events,
            clients.bedrock_runtime().meta.events,
            # the interpreter's task clients the engine keeps (EventBridge PutEvents goes through one)
            *(client.meta.events for client in kept),
        ]
        for emitter in self._emitters:
            emitter.register("before-call", self._on_call, unique_id=self._id)

    def _on_call(self, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        with self._lock:
            self.counts[f"{model.service_model.service_name}.{model.name}"] += 1

    def reset(self) -> None:
        with self._lock:
            self.counts = collections.Counter()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))

    def close(self) -> None:
        for emitter in self._emitters:
            emitter.unregister("before-call", unique_id=self._id)


def execution_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def history_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """State transitions and per-state times from an execution's history.

    A state transition is counted for every ``*StateEntered`` event: that is what Step Functions
    Standard bills ("each time a step of your workflow is executed"), Map iterations included.
    """
    entered: dict[str, list[float]] = collections.defaultdict(list)
    exited: dict[str, list[float]] = collections.defaultdict(list)
    types: collections.Counter[str] = collections.Counter()
    started = ended = None
    for event in events:
        kind = event["type"]
        types[kind] += 1
        stamp = event["timestamp"].timestamp()
        if kind == "ExecutionStarted":
            started = stamp
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            ended = stamp
        elif kind.endswith("StateEntered"):
            entered[event["stateEnteredEventDetails"]["name"]].append(stamp)
        elif kind.endswith("StateExited"):
            exited[event["stateExitedEventDetails"]["name"]].append(stamp)
    state_seconds: dict[str, list[float]] = {}
    for name, starts in entered.items():
        ends = exited.get(name, [])
        # Map branches of the same state interleave: pair the i-th entry with the i-th exit in time order
        state_seconds[name] = [round(e - s, 4) for s, e in zip(sorted(starts), sorted(ends), strict=False)]
    return {
        "state_transitions": sum(v for k, v in types.items() if k.endswith("StateEntered")),
        "event_types": dict(sorted(types.items())),
        "states_entered": {k: len(v) for k, v in entered.items()},
        "state_seconds": state_seconds,
        "execution_seconds": round(ended - started, 4) if started is not None and ended is not None else None,
        "started_at": started,
        "ended_at": ended,
    }


@dataclass
class TimedRun:
    """One engine request, timed from the client's side and from the execution's history."""

    count: int
    wall: float
    cpu: float
    status: str
    succeeded: int
    submit_seconds: float
    queue_seconds: float | None
    execution_seconds: float | None
    poll_lag_seconds: float | None
    history: dict[str, Any]


def api_polling_wait(engine: Any, arn: str, *, poll: float = 0.05, timeout: float = 900.0) -> Any:
    """How ``OfflineEngine.wait`` waited before it read moto's record of the execution: a
    ``describe_execution`` through boto3 every ``poll`` seconds. Kept to measure that change."""
    from imagegen.runtime.engine import TERMINAL, ExecutionResult

    deadline = time.monotonic() + timeout
    while True:
        described = engine.sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL:
            return ExecutionResult(
                name=described["name"],
                arn=arn,
                status=described["status"],
                output=json.loads(described["output"]) if described.get("output") else None,
                error=described.get("error"),
                cause=described.get("cause"),
            )
        if time.monotonic() > deadline:
            raise TimeoutError(arn)
        time.sleep(poll)


#: How a benchmark waits for an execution: the engine's ``wait`` (its default), or the one it replaced.
WAITS: dict[str, Callable[[Any, str], Any]] = {
    "engine": lambda engine, arn: engine.wait(arn, timeout=900),
    "api_poll_50ms": api_polling_wait,
}


def timed_engine_run(
    engine: Any, count: int, seed: int, *, wait: str = "engine", kind: str = "jobs"
) -> TimedRun:
    """Run one request through the engine (``start_execution`` + ``wait``, as ``engine.run`` does) and
    split its wall time: submit, queue (until ExecutionStarted), execution, poll lag (until seen)."""
    cpu0 = time.process_time()
    t0 = time.time()
    p0 = time.perf_counter()
    arn = engine.start_execution(engine_request(count, seed), kind=kind)
    submit = time.perf_counter() - p0
    result = WAITS[wait](engine, arn)
    wall = time.perf_counter() - p0
    t_end = t0 + wall
    cpu = time.process_time() - cpu0
    summary = history_summary(execution_history(engine.sfn, arn))
    started, ended = summary["started_at"], summary["ended_at"]
    return TimedRun(
        count=count,
        wall=wall,
        cpu=cpu,
        status=result.status,
        succeeded=int((result.output or {}).get("succeeded", 0)),
        submit_seconds=submit,
        queue_seconds=round(started - (t0 + submit), 4) if started is not None else None,
        execution_seconds=summary["execution_seconds"],
        poll_lag_seconds=round(t_end - ended, 4) if ended is not None else None,
        history=summary,
    )


# -- moto as shipped, beside the engine's speed-ups ---------------------------------------------------


@contextlib.contextmanager
def moto_speedups_applied(engine: Any, on: bool) -> Iterator[None]:
    """Run the block with the engine's moto fixes (``imagegen.runtime.moto_speedups``) on, its default,
    or off (moto as shipped); afterwards the engine has them as before."""
    from imagegen.runtime.moto_speedups import MotoFixes

    fixes = engine.moto_fixes
    if fixes is None:
        with MotoFixes() if on else contextlib.nullcontext():
            yield
    elif on:
        yield
    else:
        with fixes.suspended():
            yield


@contextlib.contextmanager
def count_calls(module: Any, attribute: str) -> Iterator[list[int]]:
    """Count calls of ``module.attribute`` (a function) while the block runs; yields ``[count]``."""
    original = getattr(module, attribute)
    counter = [0]
    lock = threading.Lock()

    @functools.wraps(original)
    def counting(*args: Any, **kwargs: Any) -> Any:
        with lock:
            counter[0] += 1
        return original(*args, **kwargs)

    setattr(module, attribute, counting)
    try:
        yield counter
    finally:
        setattr(module, attribute, original)


@contextlib.contextmanager
def count_operation(client: Any, operation: str) -> Iterator[list[int]]:
    """Count ``client``'s calls of an API operation (``DescribeExecution``) while the block runs."""
    counter = [0]
    lock = threading.Lock()
    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    unique_id = f"bench-count-{id(counter)}"

    def counting(**_: Any) -> None:
        with lock:
            counter[0] += 1

    client.meta.events.register(event, counting, unique_id=unique_id)
    try:
        yield counter
    finally:
        client.meta.events.unregister(event, unique_id=unique_id)


# -- a sampling profiler ---------------------------------------------------------------------------

#: Expensive operations, (category, path fragment, function name or None): a sample whose stack has a
#: matching frame anywhere goes to the first of these that matches, whatever runs inside it.
CAUSES: list[tuple[str, str, str | None]] = [
    ("JSONPath parse", "jsonpath_ng/", "parse"),
    ("ASL definition parse (antlr)", "antlr4/", None),
    ("ASL definition parse (antlr)", "stepfunctions/parser/asl/parse/", None),
    ("boto3 client creation", "botocore/session.py", "create_client"),
    ("boto3 client creation", "boto3/session.py", "client"),
    ("PNG render/encode (Bedrock stand-in)", "imagegen/standin/renderer.py", None),
]
#: Layers: otherwise a sample goes to the layer of its innermost matching frame (a handler's S3 call
#: is botocore's, not the Powertools decorator's around the handler).
LAYERS: list[tuple[str, str, str | None]] = [
    ("JSONPath evaluation (find, update)", "jsonpath_ng/", None),
    ("PNG render/encode (Bedrock stand-in)", "PIL/", None),
    ("Powertools (logging, event handler)", "aws_lambda_powertools/", None),
    ("pydantic (request/settings validation)", "pydantic", None),
    ("moto S3", "moto/s3/", None),
    ("moto EventBridge + SQS (event capture)", "moto/events/", None),
    ("moto EventBridge + SQS (event capture)", "moto/sqs/", None),
    ("engine waiting (status reads)", "imagegen/runtime/engine.py", "wait"),
    ("botocore: serialize, sign, parse", "botocore/", None),
    ("urllib3/http.client (HTTP to the stand-in)", "urllib3/", None),
    ("urllib3/http.client (HTTP to the stand-in)", "http/client.py", None),
    ("moto Step Functions interpreter", "moto/stepfunctions/", None),
    ("moto core (request routing)", "moto/", None),
    ("handlers and core logic", "image_pipeline/", None),
]
_IDLE_MARKERS = (".wait(", "sleep(", ".acquire(", ".join(", "select(", ".recv", "readinto(", ".accept(")


class Sampler:
    """Samples every thread's stack every ``interval`` seconds and counts the samples of threads that
    are running Python code (not blocked on a lock, a socket, a sleep), by category (``CAUSES``, then
    ``LAYERS``).

    Approximate by design: a thread waiting for the GIL looks busy to a sampler, so the shares tell
    where runnable threads spend their time, not exact CPU seconds.
    """

    def __init__(self, interval: float = 0.003) -> None:
        self.interval = interval
        self.busy: collections.Counter[str] = collections.Counter()
        self.idle = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _is_idle(frame: Any) -> bool:
        if frame.f_lineno is None:
            return False
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        return any(marker in line for marker in _IDLE_MARKERS)

    @staticmethod
    def _category(frame: Any) -> str:
        frames = []  # innermost first
        while frame is not None:
            frames.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        for category, fragment, function in CAUSES:
            for filename, name in frames:
                if fragment in filename and (function is None or name == function):
                    return category
        for filename, name in frames:
            for category, fragment, function in LAYERS:
                if fragment in filename and (function is None or name == function):
                    return category
        return "other"

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                if self._is_idle(frame):
                    self.idle += 1
                else:
                    self.busy[self._category(frame)] += 1
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def shares(self) -> list[dict[str, Any]]:
        total = sum(self.busy.values()) or 1
        return [
            {"category": name, "samples": n, "share": round(n / total, 3)}
            for name, n in self.busy.most_common()
        ]

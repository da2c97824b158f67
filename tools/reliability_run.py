"""The reliability run: many concurrent requests under injected faults, then the figures.

Offline, in one process: the project's ASL file in moto's interpreter, the real handlers, the local
Bedrock-protocol server with a fault plan, and S3 faults (``imagegen.testing.s3_faults``). Each request is
given one scenario, round-robin over :data:`SCENARIOS` (throttle bursts and persistent throttling,
model timeouts, 5xx, blocked prompts and outputs, S3 write faults, added latency, clean), with a
server-wide burst of throttling at the start and jittered latency throughout. Then:

* every execution's outcome is compared with what its scenario must give, image by image;
* every model call is accounted for (calls per image against the bound the ASL's ``Retry`` allows;
  a content-filter answer is never followed by another call for the same image);
* the bucket is audited (``imagegen.testing.audit``): every reported image exists with the right type and
  size, and nothing is stored that no manifest reports;
* every bad input of ``imagegen.testing.bad_inputs`` is sent to the local API (4xx, zero
  executions, zero objects) and started as a console run (fails with ``InvalidRequest``);
* threads and memory are sampled during the run.

Run from the repository root (the figures go to ``docs/reliability-results.json``)::

    python -m tools.reliability_run                      # 200 requests x 4 images
    python -m tools.reliability_run --requests 30 --out /tmp/r.json

The exit status is 0 when every check holds. The test suite runs a small version
(``tests/reliability/test_load.py``) on the session's engine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.tenancy import console_caller

from imagegen.runtime.engine import EngineConfig, ExecutionResult, OfflineEngine, asl_path
from imagegen.standin.bedrock_server import FaultPlan, LocalBedrockServer
from imagegen.testing.audit import audit_bucket, list_objects
from imagegen.testing.bad_inputs import HTTP_BAD_CASES, SCHEMA_BAD_REQUESTS
from imagegen.testing.s3_faults import S3Fault, s3_faults

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "reliability-results.json"
#: The per-image errors the model can cause (their retriers bound the calls per image).
MODEL_ERRORS = ("ModelThrottled", "ModelTimeout", "ModelUnavailable")
OK = ("SUCCEEDED", None)
#: Where the run's requests (bare requests: the console's) are stored.
STORED_UNDER = namespace_prefix(console_caller().namespace)


@dataclass(frozen=True)
class Scenario:
    """What a request carries and what it must give: per image, (status, reason code)."""

    name: str
    directive: str = ""
    expect: Callable[[int], tuple[str, str | None]] = lambda _: OK
    block_output_index: int | None = None
    s3: Callable[[str], S3Fault] | None = None


def _all(status: str, reason: str) -> Callable[[int], tuple[str, str | None]]:
    return lambda _: (status, reason)


def _one(index: int, status: str, reason: str) -> Callable[[int], tuple[str, str | None]]:
    return lambda i: (status, reason) if i == index else OK


#: The scenarios, in the order requests are given them.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean"),
    Scenario("latency", "[[fault:latency=0.3]]"),
    Scenario("throttle-burst", "[[fault:throttle=1]]"),
    Scenario("throttle-persistent", "[[fault:throttle]]", _all("FAILED", "THROTTLED")),
    Scenario("timeout-burst", "[[fault:timeout=1]]"),
    Scenario("timeout-persistent", "[[fault:timeout]]", _all("FAILED", "MODEL_TIMEOUT")),
    Scenario("5xx-burst", "[[fault:unavailable=1]]"),
    Scenario("5xx-persistent", "[[fault:internal]]", _all("FAILED", "MODEL_UNAVAILABLE")),
    Scenario("blocked-prompt", "[[fault:block-prompt]]", _all("FILTERED", "CONTENT_FILTERED_INPUT")),
    Scenario("blocked-output-all", "[[fault:block-output]]", _all("FILTERED", "CONTENT_FILTERED_OUTPUT")),
    Scenario(
        "blocked-output-one", expect=_one(1, "FILTERED", "CONTENT_FILTERED_OUTPUT"), block_output_index=1
    ),
    Scenario("s3-transient", s3=lambda folder: S3Fault(pattern=rf"/{folder}/.*\.png$", times=2)),
    Scenario(
        "s3-persistent-one",
        expect=_one(1, "FAILED", "STORAGE_ERROR"),
        s3=lambda folder: S3Fault(pattern=rf"/{folder}/.*-01-\d+\.png$", times=None, code="InternalError"),
    ),
    Scenario(
        "s3-ack-lost",
        s3=lambda folder: S3Fault(
            pattern=rf"/{folder}/.*-00-\d+\.png$", times=None, code="InternalError", when="after"
        ),
    ),
)


@dataclass
class RunConfig:
    """How big the run is and how it misbehaves."""

    requests: int = 200
    images: int = 4
    model: str = "stable-image-core"  # active, and offered in the offline Region
    width: int | None = None  # None: the model's default size
    height: int | None = None
    throttle_burst: int | None = None  # throttle the first N model calls (default: one per request)
    latency: float = 0.02
    latency_jitter: float = 0.05
    bedrock_max_attempts: int = 3  # botocore attempts per Lambda attempt (own engine only)
    map_max_concurrency: int = 40
    invalid_api: bool = True
    invalid_console: bool = True
    timeout: float = 1800.0
    sample_every: float = 0.25


# -- measuring -------------------------------------------------------------------------------------


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@dataclass
class Sampler:
    """Samples the thread count and resident memory on a background thread."""

    every: float
    threads: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reliability-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        self.threads.append(threading.active_count())
        rss = _rss_mb()
        if rss is not None:
            self.rss_mb.append(rss)

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def retry_bound(max_botocore_attempts: int, path: Path | None = None) -> dict[str, Any]:
    """Model calls one image may make, from the ASL's ``Retry`` of ``GenerateImage``.

    Each retrier counts its own attempts, so an image whose errors change kind may use them all:
    ``botocore attempts x (1 + sum of MaxAttempts of the retriers of model errors)``.
    """
    definition = json.loads((path or asl_path()).read_text())
    state = definition["States"]["GenerateImages"]["ItemProcessor"]["States"]["GenerateImage"]
    retriers = {
        error: retrier["MaxAttempts"]
        for retrier in state.get("Retry", [])
        for error in retrier["ErrorEquals"]
        if error in MODEL_ERRORS
    }
    distinct = {
        tuple(sorted(set(r["ErrorEquals"]) & set(MODEL_ERRORS))): r["MaxAttempts"]
        for r in state.get("Retry", [])
        if set(r["ErrorEquals"]) & set(MODEL_ERRORS)
    }
    lambda_attempts = 1 + sum(distinct.values())
    return {
        "max_attempts_by_error": retriers,
        "state_machine_attempts_per_image": lambda_attempts,
        "botocore_attempts_per_lambda": max_botocore_attempts,
        "calls_per_image": max_botocore_attempts * lambda_attempts,
    }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


# -- the run --------------------------------------------------------------------------------------


@dataclass
class _Request:
    index: int
    scenario: Scenario
    name: str
    folder: str
    prompt: str
    seed: int
    body: dict[str, Any]
    arn: str = ""
    result: ExecutionResult | None = None
    manifest: dict[str, Any] | None = None
    seconds: float | None = None


def _plan_requests(config: RunConfig, run_id: str) -> list[_Request]:
    requests = []
    for i in range(config.requests):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        text = f"reliability {run_id} request {i}: a lighthouse at dusk"
        prompt = f"{text} {scenario.directive}".strip()
        folder = f"reliability/{run_id}/{scenario.name}"
        seed = 1_000 * (i + 1)
        body = {
            "prompt": prompt,
            "count": config.images,
            "model": config.model,
            **({"width": config.width} if config.width is not None else {}),
            **({"height": config.height} if config.height is not None else {}),
            "seed": seed,
            "output_folder": folder,
            "file_name_prefix": "img",
        }
        requests.append(_Request(i, scenario, f"rel-{run_id}-{i:04d}", folder, text, seed, body))
    return requests


def _expected(
    request: _Request, images: int, storm: frozenset[int] = frozenset()
) -> tuple[list[tuple[str, str | None]], str | None]:
    """Per image (status, reason code), and the execution's error (None: it succeeds).

    ``storm``: images whose every model call was throttled by the server-wide burst; for them
    ``FAILED THROTTLED`` (retried within the bound, then reported) is the right outcome whatever the
    scenario.
    """
    per_image = [("FAILED", "THROTTLED") if i in storm else request.scenario.expect(i) for i in range(images)]
    if any(status == "SUCCEEDED" for status, _ in per_image):
        return per_image, None
    reasons = {reason for _, reason in per_image}
    if reasons <= {"CONTENT_FILTERED_INPUT", "CONTENT_FILTERED_OUTPUT"}:
        return per_image, "AllImagesFiltered"
    return per_image, "ImagesThrottled" if reasons == {"THROTTLED"} else "ImagesFailed"


def _stored_manifest(engine: OfflineEngine, request: _Request) -> dict[str, Any] | None:
    key = f"{STORED_UNDER}{request.folder}/{request.name}/manifest.json"
    try:
        return json.loads(engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read())
    except ClientError:
        return None


def storm_throttled(
    request: _Request, images: int, calls: dict[tuple[str, Any], list[dict]], min_calls: int
) -> frozenset[int]:
    """The request's images run out of retries by the storm: every model call answered with an
    error (at least ``min_calls`` of them, one per state-machine attempt), the last a
    ``ThrottlingException`` (a scenario's timeout or 5xx may come first)."""
    seed = request.body["seed"]
    answered = ("success", "filtered-prompt", "filtered-output")
    return frozenset(
        i
        for i in range(images)
        if len(entries := calls.get((request.prompt, seed + i), [])) >= min_calls
        and entries[-1]["outcome"] == "ThrottlingException"
        and not any(e["outcome"] in answered for e in entries)
    )


def _check(request: _Request, images: int, storm: frozenset[int] = frozenset()) -> list[str]:
    """How the request's outcome differs from its scenario's (empty: as expected)."""
    result = request.result
    assert result is not None
    per_image, error = _expected(request, images, storm)
    problems = []
    if error is None and result.status != "SUCCEEDED":
        problems.append(f"execution {result.status} {result.error}: {result.message[:200]}")
    if error is not None and (result.status, result.error) != ("FAILED", error):
        problems.append(f"execution {result.status} {result.error}, expected FAILED {error}")
    manifest = request.manifest
    if manifest is None:
        return [*problems, "no manifest stored"]
    got = [(i["status"], i.get("reason_code")) for i in sorted(manifest["images"], key=lambda i: i["index"])]
    if got != per_image:
        problems.append(f"images {got}, expected {per_image}")
    return problems


def _calls_by_image(server: LocalBedrockServer, run_id: str) -> tuple[dict[tuple[str, Any], list[dict]], int]:
    marker = f"reliability {run_id} "
    calls: dict[tuple[str, Any], list[dict]] = defaultdict(list)
    entries = [e for e in server.recent_requests() if str(e.get("prompt") or "").startswith(marker)]
    for entry in entries:
        calls[(entry["prompt"], entry["seed"])].append(entry)
    return calls, len(entries)


def _call_figures(
    calls: dict[tuple[str, Any], list[dict]], requests: list[_Request], bound: int, calls_in_run: int
) -> dict[str, Any]:
    by_prompt = {r.prompt: r for r in requests}
    per_image = {key: len(entries) for key, entries in calls.items()}
    filter_retried = 0
    gaps_by_scenario: dict[str, list[float]] = defaultdict(list)
    for (prompt, _), entries in calls.items():
        outcomes = [e["outcome"] for e in entries]
        filtered = [i for i, o in enumerate(outcomes) if o.startswith("filtered")]
        if filtered and filtered[0] != len(outcomes) - 1:
            filter_retried += 1
        scenario = by_prompt[prompt].scenario.name if prompt in by_prompt else "?"
        times = [e["time"] for e in entries]
        gaps_by_scenario[scenario].extend(round(b - a, 3) for a, b in itertools.pairwise(times))
    throttled = [
        n
        for (p, _), n in per_image.items()
        if p in by_prompt and by_prompt[p].scenario.name == "throttle-persistent"
    ]
    gaps = gaps_by_scenario.get("throttle-persistent", [])
    return {
        "model_calls": calls_in_run,
        "images_that_reached_the_model": len(per_image),
        "retries_observed": calls_in_run - len(per_image),
        "max_calls_per_image": max(per_image.values(), default=0),
        "bound_calls_per_image": bound,
        "images_over_the_bound": sum(1 for n in per_image.values() if n > bound),
        "calls_per_persistently_throttled_image": {
            "min": min(throttled, default=0),
            "max": max(throttled, default=0),
        },
        "filter_answers_followed_by_another_call": filter_retried,
        "waits_between_calls_of_a_persistently_throttled_image_s": {
            "samples": len(gaps),
            "min": min(gaps, default=None),
            "median": _percentile(gaps, 0.5),
            "max": max(gaps, default=None),
            "distinct_values": len(set(gaps)),
        },
    }


def _invalid_api(engine: OfflineEngine) -> dict[str, Any]:
    """Every bad input to POST /images and POST /jobs of the local API: answers, executions, objects."""
    from fastapi.testclient import TestClient

    from imagegen.runtime.local_api import create_app

    executions_before = engine.count_executions()
    objects_before = len(list_objects(engine.s3, engine.config.bucket))
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        for route in ("/images", "/jobs"):
            for raw, _ in SCHEMA_BAD_REQUESTS:
                response = client.post(
                    route, content=json.dumps(raw), headers={"Content-Type": "application/json"}
                )
                sent += 1
                statuses[response.status_code] += 1
                errors[str(response.json().get("error")) if response.status_code < 500 else "5xx"] += 1
            for case in HTTP_BAD_CASES:
                headers = {"Content-Type": case.content_type} if case.content_type else {}
                response = client.post(route, content=case.body, headers=headers)
                sent += 1
                statuses[response.status_code] += 1
                errors[str(response.json().get("error")) if response.status_code < 500 else "5xx"] += 1
    return {
        "requests_sent": sent,
        "distinct_bad_inputs": len({repr(r) for r, _ in SCHEMA_BAD_REQUESTS}) + len(HTTP_BAD_CASES),
        "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "answers_4xx": sum(v for k, v in statuses.items() if 400 <= k < 500),
        "errors": dict(errors),
        "executions_started": engine.count_executions() - executions_before,
        "objects_written": len(list_objects(engine.s3, engine.config.bucket)) - objects_before,
    }


def _invalid_console(
    engine: OfflineEngine, calls_before: int, server: LocalBedrockServer, batch: int = 20
) -> dict[str, Any]:
    """Every request-level bad input started as a console run: each must fail with InvalidRequest."""
    objects_before = len(list_objects(engine.s3, engine.config.bucket))
    inputs = [json.dumps(raw) for raw, _ in SCHEMA_BAD_REQUESTS]
    results: list[ExecutionResult] = []
    for start in range(0, len(inputs), batch):  # batches: the interpreter's timeouts are wall time
        arns = [engine.start_execution(text) for text in inputs[start : start + batch]]
        results.extend(engine.wait(arn, timeout=600, poll=0.1) for arn in arns)
    errors = Counter(str(r.error) for r in results)
    return {
        "runs": len(results),
        "failed_with_InvalidRequest": errors["InvalidRequest"],
        "errors": dict(errors),
        "model_calls": server.invocations - calls_before,
        "objects_written": len(list_objects(engine.s3, engine.config.bucket)) - objects_before,
    }


@contextmanager
def _engine(
    config: RunConfig, engine: OfflineEngine | None
) -> Iterator[tuple[OfflineEngine, LocalBedrockServer]]:
    if engine is not None:
        assert engine.bedrock is not None, "an engine with its own local Bedrock server"
        yield engine, engine.bedrock
        return
    server = LocalBedrockServer(history=10**6)
    server.start()
    try:
        with OfflineEngine(
            EngineConfig(
                bedrock_endpoint=server.endpoint_url,
                bedrock_max_attempts=config.bedrock_max_attempts,
                map_max_concurrency=config.map_max_concurrency,
            )
        ) as own:
            yield own, server
    finally:
        server.stop()


def run(config: RunConfig, engine: OfflineEngine | None = None) -> dict[str, Any]:
    """Run the workload on ``engine`` (or a new one) and return the figures."""
    run_id = uuid.uuid4().hex[:8]
    requests = _plan_requests(config, run_id)
    burst = config.requests if config.throttle_burst is None else config.throttle_burst
    blocked = {
        r.seed + s.block_output_index for r in requests if (s := r.scenario).block_output_index is not None
    }
    plan = FaultPlan(
        latency_seconds=config.latency,
        latency_jitter_seconds=config.latency_jitter,
        throttle_first=burst,
        block_output_seeds=blocked,
        random_seed=7,
    )
    rules = [r.scenario.s3(r.folder) for r in requests if r.scenario.s3 is not None]
    unique_rules = list(dict.fromkeys(rules))
    with _engine(config, engine) as (eng, server):
        calls_before = server.invocations
        saved_plan = server.faults
        server.faults = plan
        threads_before = threading.active_count()
        wall = time.perf_counter()
        cpu = time.process_time()
        try:
            with Sampler(config.sample_every) as sampler, s3_faults(*unique_rules) as s3:
                for request in requests:
                    request.arn = eng.start_execution(request.body, name=request.name, kind="jobs")
                for request in requests:
                    request.result = eng.wait(request.arn, timeout=config.timeout, poll=0.2)
                run_seconds = time.perf_counter() - wall
                s3_figures = s3.summary()
        finally:
            server.faults = saved_plan
        cpu_seconds = time.process_time() - cpu
        settle = time.monotonic() + 10
        while threading.active_count() > threads_before + 2 and time.monotonic() < settle:
            time.sleep(0.2)
        threads_after = threading.active_count()

        for request in requests:
            request.manifest = _stored_manifest(eng, request)
            described = eng.sfn.describe_execution(executionArn=request.arn)
            if described.get("stopDate") and described.get("startDate"):
                request.seconds = (described["stopDate"] - described["startDate"]).total_seconds()
        bound = retry_bound(eng.config.bedrock_max_attempts)
        calls, calls_in_run = _calls_by_image(server, run_id)
        throttle_attempts = bound["max_attempts_by_error"]["ModelThrottled"] + 1
        storms = {r.name: storm_throttled(r, config.images, calls, throttle_attempts) for r in requests}
        mismatches = {r.name: p for r in requests if (p := _check(r, config.images, storms[r.name]))}
        call_figures = _call_figures(calls, requests, bound["calls_per_image"], calls_in_run)
        call_figures["history_complete"] = calls_in_run == server.invocations - calls_before
        returned = [r.result.output for r in requests if r.result is not None and r.result.output]
        prefix = f"{STORED_UNDER}reliability/{run_id}/"
        audit = audit_bucket(eng.s3, eng.config.bucket, prefix=prefix, returned=returned)
        whole_bucket = audit_bucket(eng.s3, eng.config.bucket) if engine is None else None

        invalid_api = _invalid_api(eng) if config.invalid_api else None
        invalid_console = (
            _invalid_console(eng, server.invocations, server) if config.invalid_console else None
        )

    statuses = Counter(
        f"{r.result.status}" + (f" {r.result.error}" if r.result.error else "") for r in requests if r.result
    )
    durations = [r.seconds for r in requests if r.seconds is not None]
    images = [i for r in requests if r.manifest for i in r.manifest["images"]]
    figures: dict[str, Any] = {
        "run_id": run_id,
        "config": asdict(config),
        "requests": len(requests),
        "images_requested": len(requests) * config.images,
        "scenarios": dict(Counter(r.scenario.name for r in requests)),
        "executions_by_outcome": dict(sorted(statuses.items())),
        "images_by_status": dict(sorted(Counter(i["status"] for i in images).items())),
        "reason_codes": dict(
            sorted(Counter(i["reason_code"] for i in images if i.get("reason_code")).items())
        ),
        "images_throttled_by_the_storm": sum(
            1 for r in requests for i in storms[r.name] if r.scenario.expect(i) != ("FAILED", "THROTTLED")
        ),
        "unexpected_outcomes": len(mismatches),
        "unexpected_examples": dict(list(mismatches.items())[:10]),
        "retry_bound": bound,
        "model_calls": call_figures,
        "fault_plan": plan.to_dict(),
        "s3_faults": {"rules": [asdict(r) for r in unique_rules], **s3_figures},
        "audit": audit.to_dict(),
        "audit_whole_bucket": whole_bucket.to_dict() if whole_bucket is not None else None,
        "invalid_input_api": invalid_api,
        "invalid_input_console": invalid_console,
        "wall_seconds": round(run_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "execution_seconds": {
            "p50": _percentile(durations, 0.5),
            "p95": _percentile(durations, 0.95),
            "max": round(max(durations), 3) if durations else None,
        },
        "threads": {
            "before": threads_before,
            "peak": max(sampler.threads),
            "after": threads_after,
        },
        "rss_mb": {
            "before": sampler.rss_mb[0] if sampler.rss_mb else None,
            "peak": max(sampler.rss_mb) if sampler.rss_mb else None,
            "after": _rss_mb(),
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    figures["checks"] = checks(figures)
    return figures


def checks(figures: dict[str, Any]) -> dict[str, bool]:
    """The guarantees, each true or false, from the figures."""
    calls = figures["model_calls"]
    result = {
        "every_outcome_as_expected": figures["unexpected_outcomes"] == 0,
        "nothing_lost": figures["audit"]["ok"],
        "calls_within_the_retry_bound": calls["images_over_the_bound"] == 0,
        "content_filter_never_retried": calls["filter_answers_followed_by_another_call"] == 0,
        "retried_waits_vary": calls["waits_between_calls_of_a_persistently_throttled_image_s"][
            "distinct_values"
        ]
        > 1,
    }
    if figures.get("audit_whole_bucket") is not None:
        result["nothing_lost_whole_bucket"] = figures["audit_whole_bucket"]["ok"]
    api = figures.get("invalid_input_api")
    if api is not None:
        result["invalid_input_all_4xx"] = api["answers_4xx"] == api["requests_sent"]
        result["invalid_input_started_nothing"] = (
            api["executions_started"] == 0 and api["objects_written"] == 0
        )
    console = figures.get("invalid_input_console")
    if console is not None:
        result["invalid_console_runs_fail_with_InvalidRequest"] = (
            console["failed_with_InvalidRequest"] == console["runs"]
            and console["model_calls"] == 0
            and console["objects_written"] == 0
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.reliability_run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--requests", type=int, default=200, help="concurrent executions (default 200)")
    parser.add_argument("--images", type=int, default=4, help="images per request (default 4)")
    parser.add_argument("--throttle-burst", type=int, default=None, help="throttle the first N calls")
    parser.add_argument("--no-invalid", action="store_true", help="skip the bad-input phases")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"figures (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    config = RunConfig(
        requests=args.requests,
        images=args.images,
        throttle_burst=args.throttle_burst,
        invalid_api=not args.no_invalid,
        invalid_console=not args.no_invalid,
    )
    figures = run(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    summary = {
        k: figures[k] for k in ("requests", "images_requested", "executions_by_outcome", "reason_codes")
    }
    print(
        json.dumps(
            {**summary, "checks": figures["checks"], "wall_seconds": figures["wall_seconds"]}, indent=2
        )
    )
    print(f"figures written to {args.out}")
    return 0 if all(figures["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Part 4: C concurrent 4-image requests (default 50) through the offline engine: p50/p99 latency,
against the target p99 <= 1.5 L. Each request starts a job of the workflow, then ``engine.wait`` (a
status read of moto's record every 10 ms) in its own thread. (``POST /images`` polls DescribeExecution
with a backoff instead: ``sync_wait.py`` measures what that adds.)

Measured beside it: the same load on seed 001 (its Flask app, with the tutorial's gunicorn capacity
of 10 requests at a time, and without a limit), the engine waiting as it did before (a
``describe_execution`` through boto3 every 50 ms: 50 pollers cost the interpreter CPU), and moto as
shipped (without ``imagegen.runtime.moto_speedups``), to show what the speed-ups change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from harness import (
    PROMPT,
    WAITS,
    RunContext,
    engine_request,
    load_average,
    moto_speedups_applied,
    percentile,
    summarize,
    write_result,
)
from peers import seed001_flask

IMAGES_PER_REQUEST = 4


def _burst(concurrent: int, one_request: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """Release ``concurrent`` threads at once; each runs ``one_request(i)`` and is timed."""
    barrier = threading.Barrier(concurrent + 1)
    latencies: list[float | None] = [None] * concurrent
    details: list[dict[str, Any]] = [{} for _ in range(concurrent)]
    errors: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        begun = time.perf_counter()
        try:
            details[i] = one_request(i)
            latencies[i] = time.perf_counter() - begun
        except Exception as exc:  # report, do not hide: the summary counts failures
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(i,), name=f"burst-{i}") for i in range(concurrent)]
    for thread in threads:
        thread.start()
    barrier.wait()
    begun = time.perf_counter()
    for thread in threads:
        thread.join()
    makespan = time.perf_counter() - begun
    done = [x for x in latencies if x is not None]
    result: dict[str, Any] = {
        "requests": concurrent,
        "completed": len(done),
        "errors": errors[:5],
        "makespan_seconds": round(makespan, 3),
    }
    if done:
        result.update(
            {
                "latency": summarize(done),
                "p50_seconds": round(percentile(done, 50), 4),
                "p99_seconds": round(percentile(done, 99), 4),
            }
        )
    result["details"] = details
    return result


def _engine_burst(ctx: RunContext, concurrent: int, wait: str = "engine") -> dict[str, Any]:
    engine = ctx.engine

    def one(i: int) -> dict[str, Any]:
        arn = engine.start_execution(engine_request(IMAGES_PER_REQUEST, 50_000 + i), kind="jobs")
        result = WAITS[wait](engine, arn)
        return {"arn": arn, "status": result.status, "error": result.error}

    server = ctx.extras["bedrock_process"]
    server.reset_stats()
    burst = _burst(concurrent, one)
    burst["bedrock_max_in_flight"] = server.stats().get("max_in_flight")
    executions = []
    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    for detail in burst.pop("details"):
        if not detail:
            continue
        statuses[detail["status"]] = statuses.get(detail["status"], 0) + 1
        if detail["status"] != "SUCCEEDED":
            failures[str(detail["error"])] = failures.get(str(detail["error"]), 0) + 1
        described = engine.sfn.describe_execution(executionArn=detail["arn"])
        if described.get("stopDate"):
            executions.append((described["stopDate"] - described["startDate"]).total_seconds())
    burst["statuses"] = statuses
    burst["failed_with"] = failures
    burst["wait"] = wait
    if executions:
        burst["execution_seconds"] = summarize(executions)
    return burst


def _seed001_burst(ctx: RunContext, concurrent: int, capacity: int | None) -> dict[str, Any]:
    with seed001_flask.Seed001Server(ctx.engine.config.bucket, max_concurrent_requests=capacity) as app:
        seed001_flask.post_generate_images(app.url, PROMPT, "warm-up")

        def one(i: int) -> dict[str, Any]:
            keys = seed001_flask.post_generate_images(app.url, PROMPT, f"burst/{i}")
            return {"images": len(keys)}

        burst = _burst(concurrent, one)
    burst.pop("details")
    burst["max_concurrent_requests"] = capacity
    return burst


def run(ctx: RunContext) -> dict[str, Any]:
    started, load_start = time.perf_counter(), load_average()
    concurrent = int(ctx.extras.get("concurrent", 50))
    target = round(1.5 * ctx.latency, 4)
    ctx.engine.run(engine_request(IMAGES_PER_REQUEST, 1), kind="jobs")  # warm
    variants: dict[str, Any] = {}
    ctx.log("  engine")
    variants["engine"] = _engine_burst(ctx, concurrent)
    ctx.log(f"  engine p99 {variants['engine'].get('p99_seconds')} s; now seed 001")
    variants["seed001_gunicorn_capacity"] = _seed001_burst(ctx, concurrent, seed001_flask.GUNICORN_CAPACITY)
    if not ctx.quick:
        variants["seed001_unlimited"] = _seed001_burst(ctx, concurrent, None)
        ctx.log("  engine waiting as before: describe_execution every 50 ms")
        variants["engine_api_poll_50ms"] = _engine_burst(ctx, concurrent, wait="api_poll_50ms")
        ctx.log("  moto as shipped (no JSONPath cache, no client reuse)")
        with moto_speedups_applied(ctx.engine, False):
            ctx.engine.run(engine_request(IMAGES_PER_REQUEST, 2), kind="jobs")
            variants["moto_as_shipped"] = _engine_burst(ctx, concurrent)
    for variant in variants.values():
        p99 = variant.get("p99_seconds")
        variant["p99_over_L"] = round(p99 / ctx.latency, 3) if p99 is not None else None
        variant["target_met"] = p99 is not None and p99 <= target
    data = {
        "latency_seconds": ctx.latency,
        "concurrent_requests": concurrent,
        "images_per_request": IMAGES_PER_REQUEST,
        "target": f"p99 <= 1.5 L = {target} s",
        "variants": variants,
    }
    write_result(ctx, "concurrency", data, started=started, load_start=load_start)
    return data

"""What making every synchronous request a job costs in latency and money: ``POST /images`` on an
Express state machine that answers the moment the run ends (StartSyncExecution; offline, the engine's
10 ms read of moto's record stands in for it) beside the Standard workflow polled with DescribeExecution
on the API's backoff (``image_pipeline.core.job_control``: 0.1 s, x1.5, at most 1 s apart), side by side.

    python benchmarks/sync_wait.py                  # N = 1, 4, 10; 7 repeats interleaved; L = 0.5 s
    python benchmarks/sync_wait.py --repeats 3 --results-dir /tmp/bench

Offline, both run the same ASL and handlers on moto's interpreter against the Bedrock stand-in in its
own process; the difference is the way the end is noticed (and moto's Express and Standard paths).
Deployed, the polling lag depends only on when the run ends, so it is also computed from the schedule
for runs of 1 to 25 s. The money comes from ``results/cost.json`` (``benchmarks/cost.py``): the sync
route pays Standard's state transitions instead of Express' requests and GB-seconds, and nothing else
changes (its Lambda waits as long; DescribeExecution is not billed). Writes ``results/sync_wait.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness import (
    PROMPT,
    RESULTS_DIR,
    BedrockProcess,
    RunContext,
    count_operation,
    execution_history,
    history_summary,
    load_average,
    summarize,
    write_result,
)
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.job_control import WaitPreference, poll_delays, run_and_wait
from image_pipeline.core.tenancy import anonymous_caller, execution_name

COUNTS = (1, 4, 10)
#: Deployed run times the schedule's lag is computed for: ranges of seconds from the start to the end.
RUN_SECONDS = ((0.5, 1.0), (1.0, 2.0), (2.0, 5.0), (5.0, 10.0), (10.0, 25.0))
WAIT = WaitPreference(25.0)
#: A model past no end of life (the harness's Titan v2 is refused since 2026-06-30), at its default size.
MODEL = "stable-image-core"


def engine_request(count: int, seed: int) -> dict[str, Any]:
    return {"prompt": PROMPT, "count": count, "model": MODEL, "seed": seed}


def poll_times(until: float) -> list[float]:
    """When the API looks at its job: right after the start, then after each pause of the schedule."""
    times, at = [0.0], 0.0
    for delay in poll_delays():
        at += delay
        times.append(at)
        if at >= until:
            return times
    raise AssertionError("unreachable")


def schedule_lag(low: float, high: float, samples: int = 2000) -> dict[str, float]:
    """How late the polls see a run that ends at a time spread evenly over ``[low, high)`` seconds:
    the mean and the worst lag, and the polls made until then (DescribeExecution calls)."""
    times = poll_times(high + 2)
    lags, polls = [], []
    for i in range(samples):
        end = low + (high - low) * (i + 0.5) / samples
        seen = next(t for t in times if t >= end)
        lags.append(seen - end)
        polls.append(times.index(seen) + 1)
    return {
        "ends_between": [low, high],
        "mean_lag": round(sum(lags) / samples, 3),
        "max_lag": round(max(lags), 3),
        "polls_median": sorted(polls)[samples // 2],
    }


def express_run(engine: Any, arn: str, count: int, seed: int) -> dict[str, float]:
    """One request on the Express state machine, its end read from moto's record every 10 ms."""
    started = time.perf_counter()
    execution = engine.sfn.start_execution(
        stateMachineArn=arn, name=str(uuid.uuid4()), input=json.dumps(engine_request(count, seed))
    )["executionArn"]
    result = engine.wait(execution, timeout=300)
    wall = time.perf_counter() - started
    assert result.status == "SUCCEEDED", result
    return {"wall": wall, "execution": _execution_seconds(engine, execution)}


def standard_run(engine: Any, count: int, seed: int) -> dict[str, float]:
    """One request as ``POST /images`` makes it: a job of the Standard workflow, polled."""
    caller = anonymous_caller()
    job_id = str(uuid.uuid4())
    with count_operation(engine.sfn, "DescribeExecution") as polls:
        started = time.perf_counter()
        answer = run_and_wait(
            engine.sfn,
            engine.state_machines["jobs"],
            ExecutionInput(engine_request(count, seed), caller),
            job_id,
            WAIT,
            s3=engine.s3,
            expires_in=3600,
            location=lambda job: f"/jobs/{job}",
        )
        wall = time.perf_counter() - started
    assert answer.status == 200, answer
    arn = (
        engine.state_machines["jobs"].replace(":stateMachine:", ":execution:")
        + ":"
        + execution_name(caller, job_id)
    )
    return {"wall": wall, "execution": _execution_seconds(engine, arn), "polls": float(polls[0])}


def _execution_seconds(engine: Any, arn: str) -> float:
    seconds = history_summary(execution_history(engine.sfn, arn))["execution_seconds"]
    return float(seconds or 0.0)


def money(cost_file: Path) -> dict[str, Any]:
    """$ per 1,000 images of the synchronous route, Express (before) and Standard (now), from cost.json."""
    cost = json.loads(cost_file.read_text())
    rows = {}
    for count, parts in cost["per_1000_images"].items():
        express, standard = parts["express"], parts["standard"]
        # Now: Standard's transitions; the route's own parts (one API call, a Lambda that waits) as before.
        now = express["orchestration_total"] - express["step_functions"] + standard["step_functions"]
        rows[count] = {
            "express_sync": round(express["orchestration_total"], 4),
            "standard_sync": round(now, 4),
            "difference": round(now - express["orchestration_total"], 4),
        }
    by_model = {
        model: {
            count: round(
                100 * row["difference"] / (entry["by_images_per_request"][count]["model_per_1000_images"]), 3
            )
            for count, row in rows.items()
        }
        for model, entry in cost["by_model"].items()
    }
    return {
        "cost_file": "benchmarks/results/cost.json",
        "prices_as_of": cost.get("prices_as_of"),
        "per_1000_images": rows,
        "difference_pct_of_model_price": by_model,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/sync_wait.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    from imagegen.runtime.engine import EngineConfig, OfflineEngine

    started, load_start = time.perf_counter(), load_average()
    ctx = RunContext(quick=False, latency=args.latency, repeats=args.repeats, results_dir=args.results_dir)
    runs: dict[str, dict[int, list[dict[str, float]]]] = {"express": {}, "standard": {}}
    with BedrockProcess(args.latency) as server:
        config = EngineConfig(bedrock_endpoint=server.url, map_max_concurrency=40, max_images_per_request=40)
        with OfflineEngine(config) as engine:
            jobs = engine.state_machines["jobs"]
            definition = engine.sfn.describe_state_machine(stateMachineArn=jobs)["definition"]
            express = engine.sfn.create_state_machine(
                name="imagegen-express-bench",
                definition=definition,
                roleArn=f"arn:aws:iam::{jobs.split(':')[4]}:role/imagegen-offline",
                type="EXPRESS",
            )["stateMachineArn"]
            express_run(engine, express, 1, 1)  # warm both paths
            standard_run(engine, 1, 2)
            for repeat in range(args.repeats):
                for count in COUNTS:
                    seed = 10_000 * (repeat + 1) + count
                    runs["express"].setdefault(count, []).append(express_run(engine, express, count, seed))
                    runs["standard"].setdefault(count, []).append(standard_run(engine, count, seed + 5000))
                print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    offline: dict[str, Any] = {}
    for count in COUNTS:
        row: dict[str, Any] = {}
        for kind in ("express", "standard"):
            measured = runs[kind][count]
            row[kind] = {
                "wall_seconds": summarize([m["wall"] for m in measured]),
                "execution_seconds": summarize([m["execution"] for m in measured]),
                "seen_after_end_seconds": summarize([m["wall"] - m["execution"] for m in measured]),
            }
            if kind == "standard":
                row[kind]["describe_calls"] = summarize([m["polls"] for m in measured])
        row["wall_difference_seconds"] = round(
            row["standard"]["wall_seconds"]["median"] - row["express"]["wall_seconds"]["median"], 3
        )
        offline[str(count)] = row
        print(
            f"N={count}: express {row['express']['wall_seconds']['median']:.3f} s, "
            f"standard+poll {row['standard']['wall_seconds']['median']:.3f} s "
            f"({row['wall_difference_seconds']:+.3f} s, {row['standard']['describe_calls']['median']:.0f} polls)"
        )
    cost_file = args.results_dir / "cost.json"
    data = {
        "images_per_request": list(COUNTS),
        "model": MODEL,
        "poll_schedule": {"first": 0.1, "factor": 1.5, "max": 1.0},
        "offline": offline,
        "deployed_schedule_lag": [schedule_lag(low, high) for low, high in RUN_SECONDS],
        "money": money(cost_file) if cost_file.exists() else None,
    }
    write_result(ctx, "sync_wait", data, started=started, load_start=load_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parts 2 and 3: the wall time of one request for N images through the offline engine (the real ASL
and handlers), and the two seeds' approaches measured beside it, interleaved, against the same
Bedrock stand-in (fixed latency L) and the same moto S3.

One repeat = one direct model call (the floor), one engine request per N, one seed 001 request
(4 images; for N = 40, ten requests one after the other), and seed 000 called N times in a row.
Repeats are interleaved so that background load hits every variant alike.
"""

from __future__ import annotations

import collections
import os
import statistics
import time
from typing import Any

from harness import (
    PROMPT,
    HandlerTimer,
    RunContext,
    TimedRun,
    direct_model_call,
    load_average,
    ratio,
    summarize,
    timed_engine_run,
    write_result,
)
from peers import seed000_single, seed001_flask

#: Seed 000 at N = 40 takes 40 sequential model calls per repeat: measured in this many repeats only.
SEED000_LARGE_REPEATS = 2
TARGETS = {"wall4_over_wall1": 1.05, "wall40_over_wall1": 1.25, "overhead_seconds": 0.050}


def _state_medians(runs: list[TimedRun]) -> dict[str, float]:
    """Median seconds per state name over the runs (a Map state's inner state: over all branches)."""
    pooled: dict[str, list[float]] = collections.defaultdict(list)
    for run in runs:
        for name, seconds in run.history["state_seconds"].items():
            pooled[name].extend(seconds)
    return {name: round(statistics.median(values), 4) for name, values in sorted(pooled.items()) if values}


def _seed000(count: int) -> float:
    started = time.perf_counter()
    seed000_single.generate_sequentially(count, PROMPT)
    return time.perf_counter() - started


def _seed001(url: str, requests: int, repeat: int) -> float:
    started = time.perf_counter()
    for i in range(requests):
        seed001_flask.post_generate_images(url, PROMPT, f"bench/{repeat}/{i}", "porsche_image")
    return time.perf_counter() - started


def run(ctx: RunContext) -> dict[str, Any]:
    started, load_start = time.perf_counter(), load_average()
    engine = ctx.engine
    counts = (1, 4) if ctx.quick else (1, 4, 10, 40)
    timer = HandlerTimer(engine)
    os.environ["IMAGE_SOURCE_BUCKET"] = engine.config.bucket  # seed 000's configuration
    engine_runs: dict[int, list[TimedRun]] = collections.defaultdict(list)
    peers: dict[str, list[float]] = collections.defaultdict(list)
    direct: list[float] = []
    try:
        with seed001_flask.Seed001Server(engine.config.bucket) as flask_app:
            ctx.log("  warm-up (imports, clients, first execution)")
            for n in (1,) if ctx.quick else (1, 4):
                timed_engine_run(engine, n, seed=7)
            _seed001(flask_app.url, 1, -1)
            _seed000(1)
            direct_model_call(ctx.bedrock_url, 1)
            timer.reset()
            for repeat in range(ctx.repeats):
                direct.append(direct_model_call(ctx.bedrock_url, 100 + repeat))
                for n in counts:
                    engine_runs[n].append(timed_engine_run(engine, n, seed=1000 * repeat + n))
                peers["seed001_4"].append(_seed001(flask_app.url, 1, repeat))
                if 40 in counts and repeat < SEED000_LARGE_REPEATS:
                    peers["seed001_40"].append(_seed001(flask_app.url, 10, repeat))
                for n in counts:
                    if n < 40 or repeat < SEED000_LARGE_REPEATS:
                        peers[f"seed000_{n}"].append(_seed000(n))
                medians = {n: round(statistics.median(r.wall for r in engine_runs[n]), 2) for n in counts}
                ctx.log(f"  repeat {repeat + 1}/{ctx.repeats}: engine median wall so far {medians}")
    finally:
        timer.close()

    latency = ctx.latency
    wall1 = statistics.median(r.wall for r in engine_runs[1])
    direct_median = statistics.median(direct)
    points = []
    for n in counts:
        runs = engine_runs[n]
        wall = statistics.median(r.wall for r in runs)
        points.append(
            {
                "count": n,
                "all_succeeded": all(r.status == "SUCCEEDED" and r.succeeded == n for r in runs),
                "wall": summarize([r.wall for r in runs]),
                "wall_over_wall1": ratio(wall, wall1),
                "overhead_seconds": round(wall - latency, 4),
                "cpu_seconds": summarize([r.cpu for r in runs]),
                "submit_seconds": summarize([r.submit_seconds for r in runs]),
                "queue_seconds": summarize([r.queue_seconds or 0.0 for r in runs]),
                "execution_seconds": summarize([r.execution_seconds or 0.0 for r in runs]),
                "poll_lag_seconds": summarize([r.poll_lag_seconds or 0.0 for r in runs]),
                "state_seconds_median": _state_medians(runs),
                "state_transitions": runs[0].history["state_transitions"],
            }
        )
    by_count = {p["count"]: p for p in points}
    handler = {name: summarize(values) for name, values in sorted(timer.durations.items())}
    model_seconds = summarize(timer.model_seconds) if timer.model_seconds else None
    targets = [
        {
            "target": "wall(4)/wall(1) <= 1.05",
            "value": by_count[4]["wall_over_wall1"],
            "met": by_count[4]["wall_over_wall1"] <= TARGETS["wall4_over_wall1"],
        },
        {
            "target": "overhead wall(1) - L <= 0.050 s",
            "value": by_count[1]["overhead_seconds"],
            "met": by_count[1]["overhead_seconds"] <= TARGETS["overhead_seconds"],
        },
    ]
    if 40 in by_count:
        targets.insert(
            1,
            {
                "target": "wall(40)/wall(1) <= 1.25",
                "value": by_count[40]["wall_over_wall1"],
                "met": by_count[40]["wall_over_wall1"] <= TARGETS["wall40_over_wall1"],
            },
        )
    fanout = {
        "latency_seconds": latency,
        "model": "stability.stable-image-core-v1:1 via registry id stable-image-core, 1:1 (1024x1024)",
        "bedrock_server": "python -m imagegen.standin.bedrock_server in a child process (see harness.BedrockProcess)",
        "direct_model_call": summarize(direct),
        "overhead_split_wall1": {
            "latency_L": latency,
            "stand_in_beyond_L": round(direct_median - latency, 4),
            "workflow_and_harness": round(wall1 - direct_median, 4),
        },
        "points": points,
        "handler_seconds": handler,
        "generate_image_model_seconds": model_seconds,
        "targets": targets,
    }
    write_result(ctx, "fanout", fanout, started=started, load_start=load_start)

    ratios = []
    for n in counts:
        engine_wall = by_count[n]["wall"]["median"]
        row: dict[str, Any] = {"count": n, "engine_seconds": engine_wall}
        seed000_key = f"seed000_{n}"
        if peers.get(seed000_key):
            s0 = statistics.median(peers[seed000_key])
            row.update({"seed000_seconds": round(s0, 4), "engine_over_seed000": ratio(engine_wall, s0)})
        seed001_key = "seed001_4" if n == 4 else "seed001_40" if n == 40 else None
        if seed001_key and peers.get(seed001_key):
            s1 = statistics.median(peers[seed001_key])
            row.update({"seed001_seconds": round(s1, 4), "engine_over_seed001": ratio(engine_wall, s1)})
        ratios.append(row)
    peer_data = {
        "latency_seconds": latency,
        "seed001": {
            "what": "Flask + ThreadPoolExecutor, 4 images per request (N = 40: 10 requests in a row)",
            "max_concurrent_requests": seed001_flask.GUNICORN_CAPACITY,
            **{key: summarize(values) for key, values in peers.items() if key.startswith("seed001")},
        },
        "seed000": {
            "what": "one Lambda handler, one image per request, called N times in a row",
            **{key: summarize(values) for key, values in peers.items() if key.startswith("seed000")},
        },
        "engine_wall_median": {str(n): by_count[n]["wall"]["median"] for n in counts},
        "ratios": ratios,
    }
    write_result(ctx, "peers", peer_data, started=started, load_start=load_start)
    return {"fanout": fanout, "peers": peer_data}

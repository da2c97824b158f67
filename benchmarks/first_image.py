"""Live progress: how soon the first image of a 4-image request is there, beside all four.

    python benchmarks/first_image.py                 # 7 runs; model latency 1 s + up to 2 s of jitter
    python benchmarks/first_image.py --quick --results-dir /tmp/bench

Each run starts a job of the Standard workflow offline (moto's interpreter, the handlers in-process, the
Bedrock stand-in) and follows it as ``GET /jobs/{id}/events`` does on the local server: the same
:func:`~image_pipeline.core.job_events.job_events` every ``POLL_SECONDS`` (the local stream's 0.25 s).
It records when the first ``image`` event is seen (the page shows that picture) and when the end event
is (before live progress, the page showed nothing until then). A model's time varies from image to
image, so the stand-in answers each call after ``latency`` plus a uniform draw of up to ``jitter``
seconds (seeded: the same draws in every run of the script). Writes ``results/first_image.json``.
Deployed, the first image is seen one batch later at most: the route answers a batch every 2 s
(``retry: 2000``), so add about 1 s on average, 2 s at worst.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness import PROMPT, RESULTS_DIR, RunContext, load_average, summarize, write_result
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.job_events import job_events
from image_pipeline.core.jobs import start_job
from image_pipeline.core.tenancy import anonymous_caller

from imagegen.runtime.engine import EngineConfig, OfflineEngine
from imagegen.runtime.local_events import POLL_SECONDS
from imagegen.standin.faults import FaultPlan

COUNT = 4
MODEL = "stable-image-core"


def one_run(engine: Any, seed: int) -> dict[str, float]:
    """One 4-image job, followed as the events stream follows it: seconds to the first image event
    and to the end event, from the start."""
    caller = anonymous_caller()
    job_id = f"first-image-{uuid.uuid4().hex[:12]}"
    request = {"prompt": PROMPT, "count": COUNT, "model": MODEL, "seed": seed}
    started = time.perf_counter()
    start_job(engine.sfn, engine.state_machines["jobs"], ExecutionInput(request, caller), job_id)
    first: float | None = None
    after = 0
    while True:
        read = job_events(
            engine.sfn,
            engine.state_machines["jobs"],
            job_id,
            caller=caller,
            s3=engine.s3,
            bucket=engine.config.bucket,
            expires_in=3600,
            after=after,
        )
        now = time.perf_counter() - started
        images = [e for e in read.events if e.event == "image"]
        if images and first is None:
            first = now
        after += len(images)
        if read.ended:
            assert read.events[-1].event == "completed", read.events[-1]
            assert after == COUNT, f"{after} image events for {COUNT} images"
            return {"first_image": first if first is not None else now, "all_images": now}
        time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs (the smoke test's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency", type=float, default=1.0, help="the model's least time per image")
    parser.add_argument("--jitter", type=float, default=2.0, help="up to this much more, drawn per call")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    ctx = RunContext(quick=args.quick, latency=args.latency, repeats=repeats, results_dir=args.results_dir)
    load_start, started = load_average(), time.perf_counter()
    faults = FaultPlan(latency_seconds=args.latency, latency_jitter_seconds=args.jitter, random_seed=14)
    runs = []
    with OfflineEngine(EngineConfig(map_max_concurrency=COUNT, faults=faults)) as engine:
        one_run(engine, seed=1)  # warm-up: imports and moto's first calls, not counted
        for repeat in range(repeats):
            run = one_run(engine, seed=1 + COUNT * (repeat + 1))
            runs.append({k: round(v, 3) for k, v in run.items()})
            print(f"run {repeat + 1}: first image {run['first_image']:.2f} s, all {run['all_images']:.2f} s")
    first = summarize([r["first_image"] for r in runs])
    every = summarize([r["all_images"] for r in runs])
    data = {
        "count": COUNT,
        "model": MODEL,
        "latency_seconds": args.latency,
        "jitter_seconds": args.jitter,
        "poll_seconds": POLL_SECONDS,
        "runs": runs,
        "first_image": first,
        "all_images": every,
        "first_image_share_of_all": round(first["median"] / every["median"], 3),
    }
    path = write_result(ctx, "first_image", data, started=started, load_start=load_start)
    print(f"first image {first['median']:.2f} s (median), all four {every['median']:.2f} s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-image webhooks: how soon a receiver hears of the first image of a 4-image job, beside its end.

    python benchmarks/webhook_first_image.py                 # 7 runs; model 1 s + up to 2 s of jitter
    python benchmarks/webhook_first_image.py --quick --results-dir /tmp/bench

Each run starts a job of the Standard workflow offline with ``"webhook_events": ["image", "completed"]``
and a webhook on a receiver in this process (127.0.0.1), delivered by the deployed delivery code over
moto's SQS (``imagegen.runtime.local_webhooks``, polling its queue every 0.05 s). It records when the
first ``job.image`` POST arrives (queued by the branch that stored the image: ``core/webhooks.py``) and
when ``job.completed`` does. Before image events came from the branches, every image event was queued
with the job's end, so a receiver heard of the first image no sooner than of the end. The stand-in's
latency and jitter are those of ``benchmarks/first_image.py`` (the same seeded draws). Writes
``results/webhook_first_image.json``. Deployed, add the SQS-to-Lambda hop (the event source's polling)
to both.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import PROMPT, RESULTS_DIR, RunContext, load_average, summarize, write_result
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.jobs import start_job
from image_pipeline.core.tenancy import anonymous_caller

from imagegen.runtime.engine import EngineConfig, OfflineEngine
from imagegen.runtime.local_webhooks import LocalWebhooks
from imagegen.standin.faults import FaultPlan

COUNT = 4
MODEL = "stable-image-core"
SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


class Receiver:
    """A webhook receiver on 127.0.0.1 that notes when each POST's ``type`` arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with receiver.lock:
                    receiver.arrivals.append((time.perf_counter(), body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_job(self, job_id: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [
                (at, b)
                for at, b in self.arrivals
                if job_id in (b.get("job_id"), (b.get("job") or {}).get("job_id"))
            ]


def one_run(engine: Any, receiver: Receiver, seed: int) -> dict[str, float]:
    """One 4-image job with image and completed webhooks: seconds from the start to the first
    ``job.image`` POST and to ``job.completed``."""
    job_id = f"webhook-first-{uuid.uuid4().hex[:12]}"
    request = {
        "prompt": PROMPT,
        "count": COUNT,
        "model": MODEL,
        "seed": seed,
        "cache": False,
        "webhook": receiver.url,
        "webhook_events": ["image", "completed"],
    }
    started = time.perf_counter()
    start_job(engine.sfn, engine.state_machines["jobs"], ExecutionInput(request, anonymous_caller()), job_id)
    deadline = started + 120
    while time.perf_counter() < deadline:
        got = receiver.of_job(job_id)
        if len(got) == COUNT + 1:
            images = [at for at, b in got if b["type"] == "job.image"]
            (completed,) = [at for at, b in got if b["type"] == "job.completed"]
            return {"first_image": min(images) - started, "completed": completed - started}
        time.sleep(0.02)
    raise TimeoutError(f"{job_id}: {len(receiver.of_job(job_id))} of {COUNT + 1} webhooks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency", type=float, default=1.0, help="the model's least time per image")
    parser.add_argument("--jitter", type=float, default=2.0, help="up to this much more, drawn per call")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    ctx = RunContext(quick=args.quick, latency=args.latency, repeats=repeats, results_dir=args.results_dir)
    load_start, started = load_average(), time.perf_counter()
    faults = FaultPlan(latency_seconds=args.latency, latency_jitter_seconds=args.jitter, random_seed=14)
    receiver = Receiver()
    runs = []
    with (
        OfflineEngine(EngineConfig(map_max_concurrency=COUNT, faults=faults)) as engine,
        LocalWebhooks(engine, secret=SECRET, poll_seconds=0.05),
    ):
        one_run(engine, receiver, seed=1)  # warm-up: imports and moto's first calls, not counted
        for repeat in range(repeats):
            run = one_run(engine, receiver, seed=1 + COUNT * (repeat + 1))
            runs.append({k: round(v, 3) for k, v in run.items()})
            print(
                f"run {repeat + 1}: first image webhook {run['first_image']:.2f} s, completed {run['completed']:.2f} s"
            )
    receiver.server.shutdown()
    first = summarize([r["first_image"] for r in runs])
    completed = summarize([r["completed"] for r in runs])
    data = {
        "count": COUNT,
        "model": MODEL,
        "latency_seconds": args.latency,
        "jitter_seconds": args.jitter,
        "worker_poll_seconds": 0.05,
        "runs": runs,
        "first_image_webhook": first,
        "completed_webhook": completed,
        "first_image_share_of_completed": round(first["median"] / completed["median"], 3),
    }
    path = write_result(ctx, "webhook_first_image", data, started=started, load_start=load_start)
    print(
        f"first image webhook {first['median']:.2f} s (median), completed {completed['median']:.2f} s: {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

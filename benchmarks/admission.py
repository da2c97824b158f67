"""Admission control against a Bedrock quota, side by side in one run (issue 15, item 3).

J concurrent 4-image jobs (default 50) of one model, offline, against the Bedrock stand-in with a quota
of Q calls in flight (default 4; the call past it is answered ThrottlingException, as Bedrock does),
run twice through the same ASL and handlers: without admission control (``EngineConfig(admission=False)``:
every branch calls at once, as before issue 15) and with it (the model's semaphore set to Q). For each:
images ``THROTTLED`` in the manifests (target 0 with admission control), calls the stand-in refused
as a share of its calls (target under 5 %), and throughput (images generated per second) as a fraction
of what the quota allows, Q / L for calls of L seconds (target >= 90 %).

    python benchmarks/admission.py                        # 50 jobs x 4 images, quota 4, L = 2 s
    python benchmarks/admission.py --jobs 3 --images 2 --quota 2 --latency 0.1 --results-dir /tmp/b

Writes ``results/admission.json``. Not part of ``make test`` (tests/e2e/test_admission_benchmark.py
runs it with tiny numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from harness import PROMPT, RESULTS_DIR, RunContext, load_average, summarize, write_result

MODEL = "stable-image-core"


def run_variant(
    *, admission: bool, jobs: int, images: int, quota: int, latency: float, early_release: bool = True
) -> dict[str, Any]:
    """One variant: ``jobs`` executions started at once, each waited for in its own thread.

    ``early_release=False`` measures the workflow as it was before GenerateImage gave its slot back
    right after the model's answer: its hand-off fails at once, so the slot is held until ``ReleaseSlot``
    (the upload and two state transitions later)."""
    with _early_release(early_release):
        return _run_variant(admission=admission, jobs=jobs, images=images, quota=quota, latency=latency)


@contextlib.contextmanager
def _early_release(on: bool) -> Iterator[None]:
    """``on=False``: GenerateImage's hand-off right after the call fails at once (as a DynamoDB write
    that raises), so, as ``release_after_call`` does on any failure, the slot stays held until
    ``ReleaseSlot`` gives it on. Patched in the handler's module: its hand-off and ``ReleaseSlot``
    share one DynamoDB client, which must keep working for ``ReleaseSlot``."""
    if on:
        yield
        return
    from botocore.exceptions import ClientError

    def no_early_release(*_: Any, on_error: Callable[[Exception], None], **__: Any) -> None:
        on_error(
            ClientError({"Error": {"Code": "Benchmark", "Message": "held until ReleaseSlot"}}, "UpdateItem")
        )

    with mock.patch("image_pipeline.handlers.generate_image.release_after_call", no_early_release):
        yield


def _run_variant(*, admission: bool, jobs: int, images: int, quota: int, latency: float) -> dict[str, Any]:
    from imagegen.runtime.engine import EngineConfig, OfflineEngine
    from imagegen.standin.faults import FaultPlan

    config = EngineConfig(
        admission=admission,
        model_concurrency={MODEL: quota},
        bedrock_quotas={MODEL: quota},
        faults=FaultPlan(latency_seconds=latency),
        map_max_concurrency=40,
    )
    with OfflineEngine(config) as engine:
        results: list[Any] = [None] * jobs
        ended: list[float] = [0.0] * jobs
        arns: list[str] = []
        began = time.perf_counter()
        for i in range(jobs):
            arns.append(
                engine.start_execution(
                    {"prompt": f"{PROMPT} {i}", "count": images, "model": MODEL, "seed": 1 + i * images}
                )
            )

        def wait(i: int) -> None:
            results[i] = engine.wait(arns[i], timeout=1800)
            ended[i] = time.perf_counter() - began

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        makespan = max(ended)
        manifests = [
            json.loads(engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read())
            for key in engine.list_keys()
            if key.endswith("/manifest.json")
        ]
        stats = engine.bedrock.stats() if engine.bedrock else {}
    statuses = [image["status"] for m in manifests for image in m["images"]]
    reasons = [image.get("reason_code") for m in manifests for image in m["images"]]
    generated = statuses.count("SUCCEEDED")
    calls = stats.get("invocations", 0)
    refused = stats.get("over_quota", 0)
    allowed_per_second = quota / latency
    return {
        "admission": admission,
        "executions": {s: [r.status for r in results].count(s) for s in {r.status for r in results}},
        "images_requested": jobs * images,
        "images_generated": generated,
        "images_throttled": reasons.count("THROTTLED"),
        "images_failed_other": sum(
            1 for s, r in zip(statuses, reasons, strict=True) if s != "SUCCEEDED" and r != "THROTTLED"
        ),
        "manifests": len(manifests),
        "bedrock_calls": calls,
        "bedrock_refused": refused,
        "refused_share": round(refused / calls, 4) if calls else 0.0,
        "max_in_flight": stats.get("max_in_flight_by_model", {}),
        "makespan_seconds": round(makespan, 2),
        "job_seconds": summarize(ended),
        "images_per_second": round(generated / makespan, 3),
        "quota_images_per_second": round(allowed_per_second, 3),
        "throughput_fraction_of_quota": round(generated / makespan / allowed_per_second, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/admission.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--quota", type=int, default=4)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    started, load_start = time.perf_counter(), load_average()
    ctx = RunContext(quick=args.jobs < 50, latency=args.latency, repeats=1, results_dir=args.results_dir)
    variants = {}
    plans = (
        ("without_admission", False, True),
        ("with_admission_slot_held_until_release_slot", True, False),  # before GenerateImage released early
        ("with_admission", True, True),
    )
    for name, admission, early in plans:
        print(
            f"{name}: {args.jobs} jobs x {args.images} images, quota {args.quota}, L = {args.latency} s",
            flush=True,
        )
        variants[name] = run_variant(
            admission=admission,
            jobs=args.jobs,
            images=args.images,
            quota=args.quota,
            latency=args.latency,
            early_release=early,
        )
        variants[name]["slot_given_back_after_the_model_call"] = admission and early
        print(json.dumps(variants[name]), flush=True)
    with_ = variants["with_admission"]
    data = {
        "model": MODEL,
        "jobs": args.jobs,
        "images_per_job": args.images,
        "quota_in_flight": args.quota,
        "variants": variants,
        "targets": {
            "throttled_images_with_admission": {"target": 0, "measured": with_["images_throttled"]},
            "refused_share_with_admission": {"target": "< 0.05", "measured": with_["refused_share"]},
            "throughput_fraction_with_admission": {
                "target": ">= 0.90",
                "measured": with_["throughput_fraction_of_quota"],
                "slot_held_until_release_slot": variants["with_admission_slot_held_until_release_slot"][
                    "throughput_fraction_of_quota"
                ],
            },
        },
    }
    path = write_result(ctx, "admission", data, started=started, load_start=load_start)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

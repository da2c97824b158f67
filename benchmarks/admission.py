"""Admission control against a Bedrock quota, side by side in one run (issue 15, item 3).

J concurrent 4-image jobs (default 50) of one model, offline, against the Bedrock stand-in with a quota
of Q calls in flight (default 4; the call past it is answered ThrottlingException, as Bedrock does),
run through the same ASL and handlers three times: without admission control
(``EngineConfig(admission=False)``: every branch calls at once, as before issue 15); with its queue but
the slot held until ``ReleaseSlot`` (GenerateImage's hand-off after the model's answer switched off);
and as shipped (GenerateImage hands the slot to the oldest waiting branch right after the model's
answer). For each: images ``THROTTLED`` in the manifests (target 0 with admission control), calls the
stand-in refused as a share of its calls (target under 5 %), and throughput (images generated per
second) as a fraction of what the quota allows, Q / L for calls of L seconds (target >= 90 %).

Each variant also traces where a slot's time goes (``trace``): every call the stand-in accepted (its
start and end), every function invocation, and every ``SendTaskSuccess`` that woke a branch, so a
hand-off splits into the giver's call end -> the wake sent -> ``SendTaskSuccess`` returned -> the woken
branch's GenerateImage invoked -> its call at the stand-in. The machine's load average is recorded
per variant (the machine is shared); ``--also-jobs N`` runs the same variants with N jobs in the same
run, to show the ratio at a lighter load.

    python benchmarks/admission.py                        # 50 jobs x 4 images, quota 4, L = 2 s
    python benchmarks/admission.py --also-jobs 20         # and the same three variants with 20 jobs
    python benchmarks/admission.py --jobs 3 --images 2 --quota 2 --latency 0.1 --results-dir /tmp/b

Writes ``results/admission.json`` (the polling admission control it replaced was measured in
``results/admission_polling.json``). Not part of ``make test`` (tests/e2e/test_admission_benchmark.py
runs it with tiny numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from harness import PROMPT, RESULTS_DIR, RunContext, load_average, percentile, summarize, write_result

MODEL = "stable-image-core"

#: name -> (admission control on, GenerateImage hands the slot on right after the model's answer)
PLANS: dict[str, tuple[bool, bool]] = {
    "without_admission": (False, False),
    "with_admission_slot_held_until_release_slot": (True, False),
    "with_admission": (True, True),
}


def run_variant(
    *, admission: bool, jobs: int, images: int, quota: int, latency: float, early_release: bool = True
) -> dict[str, Any]:
    """One variant: ``jobs`` executions started at once, each waited for in its own thread.

    ``early_release=False``: GenerateImage finds no admission control to hand its slot on with (its
    ``admission_runtime`` answers None), so the slot is held until ``ReleaseSlot`` gives it on (the
    upload and two state transitions later); acquiring, the queue and ``ReleaseSlot`` are unchanged."""
    load_before = load_average()
    result = _run_variant(
        admission=admission,
        jobs=jobs,
        images=images,
        quota=quota,
        latency=latency,
        early_release=early_release,
    )
    result["loadavg_before_after"] = [load_before, load_average()]
    result["slot_given_back_after_the_model_call"] = admission and early_release
    return result


@contextlib.contextmanager
def _early_release(on: bool) -> Iterator[None]:
    """``on=False``: GenerateImage's hand-off after the model's answer does nothing (the handler's
    ``admission_runtime`` answers None, as with admission control off), so the slot stays held until
    ``ReleaseSlot`` hands it on; the Admission function is untouched."""
    if on:
        yield
        return
    from image_pipeline.handlers import generate_image

    with mock.patch.object(generate_image, "admission_runtime", lambda _settings: None):
        yield


@dataclass
class Trace:
    """Timestamps (``time.perf_counter``) of one variant's calls, invocations and wake-ups."""

    #: accepted calls at the stand-in: (start, end, seed); refused ones only counted
    calls: list[tuple[float, float, Any]] = field(default_factory=list)
    #: (function, action, branch, start, end); branch = (execution name, image index) or None
    invocations: list[tuple[str, str, Any, float, float]] = field(default_factory=list)
    #: SendTaskSuccess: (token, start, end, the invocation that sent it: (function, action, branch),
    #: when that invocation began giving its slot on: GenerateImage's ``release_after_call`` or
    #: ``ReleaseSlot``'s invocation; None for an acquire or the keeper)
    wakes: list[tuple[str, float, float, tuple[str, str, Any], float | None]] = field(default_factory=list)
    #: invocations that ended in an error: "function:action errorType" -> how many
    errors: dict[str, int] = field(default_factory=dict)
    #: the first of each kind: its message and the last frames of its stack
    error_examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: GenerateImage's hand-offs right after the call (``release_after_call``) begun
    early_hand_offs: int = 0
    #: task token -> branch, from AcquireSlot's payloads
    tokens: dict[str, Any] = field(default_factory=dict)
    #: GenerateImage's branch -> its image's seed (the stand-in sees the seed)
    seeds: dict[Any, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: threading.local = field(default_factory=threading.local)


@contextlib.contextmanager
def traced(engine: Any) -> Iterator[Trace]:
    """Record the stand-in's calls, the router's invocations and ``SendTaskSuccess`` while inside."""
    from image_pipeline.core import admission_runtime
    from image_pipeline.handlers import admission, generate_image

    trace = Trace()
    bedrock_invoke, router_invoke = engine.bedrock._invoke, engine.router.invoke
    send, release_after_call = admission_runtime.send_task_success, generate_image.release_after_call

    def on_call(raw_model_id: str, body: bytes, authorization: str | None = None) -> Any:
        began = time.perf_counter()
        reply = bedrock_invoke(raw_model_id, body, authorization)
        if reply.outcome != "ThrottlingException":
            try:
                seed = json.loads(body).get("seed")
            except ValueError:
                seed = None
            with trace.lock:
                trace.calls.append((began, time.perf_counter(), seed))
        return reply

    def on_invoke(name: str, event: Any) -> Any:
        action = str(event.get("action", "")) if isinstance(event, dict) else ""
        branch = None
        if isinstance(event, dict) and "image" in event:  # GenerateImage: the Map item
            branch = (event.get("execution_name"), event["image"].get("index"))
            with trace.lock:
                trace.seeds.setdefault(branch, event["image"].get("seed"))
        elif isinstance(event, dict) and "index" in event:  # AcquireSlot, ReleaseSlot
            branch = (event.get("execution_name"), event.get("index"))
            if event.get("task_token"):
                with trace.lock:
                    trace.tokens[event["task_token"]] = branch
        began = time.perf_counter()
        trace.current.who = (name, action, branch)
        trace.current.releasing = began if action == "release" else None
        try:
            status, function_error, payload = router_invoke(name, event)
        finally:
            with trace.lock:
                trace.invocations.append((name, action, branch, began, time.perf_counter()))
            trace.current.who = trace.current.releasing = None
        if function_error:
            answer = json.loads(payload)
            error = f"{name}:{action} {answer.get('errorType')}"
            with trace.lock:
                trace.errors[error] = trace.errors.get(error, 0) + 1
                trace.error_examples.setdefault(
                    error,
                    {
                        "message": str(answer.get("errorMessage"))[:300],
                        "stack": answer.get("stackTrace", [])[-3:],
                    },
                )
        return status, function_error, payload

    def on_release_after_call(*args: Any, **kwargs: Any) -> Any:
        trace.current.releasing = time.perf_counter()
        with trace.lock:
            trace.early_hand_offs += 1
        return release_after_call(*args, **kwargs)

    def on_wake(sfn: Any, token: str, output: Any) -> bool:
        began = time.perf_counter()
        try:
            return send(sfn, token, output)
        finally:
            who = getattr(trace.current, "who", None) or ("", "", None)
            releasing = getattr(trace.current, "releasing", None)
            with trace.lock:
                trace.wakes.append((token, began, time.perf_counter(), who, releasing))

    engine.bedrock._invoke, engine.router.invoke = on_call, on_invoke
    try:
        with (
            mock.patch.object(admission_runtime, "send_task_success", on_wake),
            mock.patch.object(admission, "send_task_success", on_wake),  # admission control off
            mock.patch.object(generate_image, "release_after_call", on_release_after_call),
        ):
            yield trace
    finally:
        engine.bedrock._invoke, engine.router.invoke = bedrock_invoke, router_invoke


def _ms(values: list[float]) -> dict[str, Any]:
    """Median, p90, mean, min and max of durations in seconds, as milliseconds (no value list)."""
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
    }


def analyse(trace: Trace, *, began: float, makespan: float, quota: int) -> dict[str, Any]:
    """Where the run's time went: before the first call, the calls' span and how busy the quota was
    in it, after the last call; how busy once every branch had asked for its slot (the last
    ``AcquireSlot`` invocation over: the queue formed) until the last call began; each hand-off split
    into its steps; the functions' own times and errors."""
    calls = sorted(trace.calls)
    if not calls:
        return {"calls": 0}
    first, last = calls[0][0], max(end for _, end, _ in calls)
    span = last - first
    busy = sum(end - start for start, end, _ in calls)
    call_of_seed: dict[Any, tuple[float, float]] = {}
    for start, end, seed in calls:
        call_of_seed.setdefault(seed, (start, end))
    from image_pipeline.functions import GENERATE_IMAGE

    generate_start: dict[Any, float] = {}
    for name, _, branch, start, _ in trace.invocations:
        if branch is not None and name == GENERATE_IMAGE.name:
            generate_start.setdefault(branch, start)
    steps: dict[str, list[float]] = {
        "giver_call_end_to_release_began": [],
        "release_began_to_wake_sent": [],
        "send_task_success": [],
        "wake_returned_to_generate_image_invoked": [],
        "generate_image_invoked_to_call": [],
        "slot_idle_call_end_to_next_call": [],
    }
    by_sender: dict[str, int] = {}
    for token, sent, returned, (function, action, giver), releasing in trace.wakes:
        woken = trace.tokens.get(token)
        if action == "acquire" and giver == woken:
            kind = "acquire_took_a_free_slot"
        elif action == "acquire":
            kind = "acquire_filled_a_free_slot"
        elif action == "sweep":
            kind = "keeper_sweep"
        else:
            kind = f"{function}:{action or 'after_call'}"
        by_sender[kind] = by_sender.get(kind, 0) + 1
        if giver is None or woken is None or giver == woken or action in {"acquire", "sweep"}:
            continue
        giver_call = call_of_seed.get(trace.seeds.get(giver))
        woken_call = call_of_seed.get(trace.seeds.get(woken))
        invoked = generate_start.get(woken)
        if giver_call is None or woken_call is None or invoked is None or releasing is None:
            continue
        steps["giver_call_end_to_release_began"].append(releasing - giver_call[1])
        steps["release_began_to_wake_sent"].append(sent - releasing)
        steps["send_task_success"].append(returned - sent)
        steps["wake_returned_to_generate_image_invoked"].append(invoked - returned)
        steps["generate_image_invoked_to_call"].append(woken_call[0] - invoked)
        steps["slot_idle_call_end_to_next_call"].append(woken_call[0] - giver_call[1])
    acquires = [end for _, action, _, _, end in trace.invocations if action == "acquire"]
    formed = max(acquires, default=first)
    window = calls[-1][0] - formed  # the queue formed .. the last call began
    busy_in_window = sum(max(0.0, min(end, calls[-1][0]) - max(start, formed)) for start, end, _ in calls)
    functions: dict[str, list[float]] = {}
    for name, action, _, start, end in trace.invocations:
        functions.setdefault(f"{name}:{action}" if action else name, []).append(end - start)
    return {
        "calls_accepted": len(calls),
        "first_call_after_start_seconds": round(first - began, 2),
        "calls_span_seconds": round(span, 2),
        "after_last_call_seconds": round(makespan - (last - began), 2),
        "call_seconds": _ms([end - start for start, end, _ in calls]),
        "quota_busy_share_of_calls_span": round(busy / (quota * span), 4) if span else 0.0,
        "queue_formed_after_start_seconds": round(formed - began, 2),
        "quota_busy_share_once_queued": round(busy_in_window / (quota * window), 4) if window > 0 else None,
        "early_hand_offs_begun": trace.early_hand_offs,
        "wakes_by_sender": by_sender,
        "hand_off_steps": {name: _ms(values) for name, values in steps.items()},
        "function_seconds": {name: _ms(values) for name, values in sorted(functions.items())},
        "function_errors": dict(sorted(trace.errors.items())),
        "function_error_examples": dict(sorted(trace.error_examples.items())),
    }


def _run_variant(
    *, admission: bool, jobs: int, images: int, quota: int, latency: float, early_release: bool
) -> dict[str, Any]:
    from imagegen.runtime.engine import EngineConfig, OfflineEngine
    from imagegen.standin.faults import FaultPlan

    config = EngineConfig(
        admission=admission,
        model_concurrency={MODEL: quota},
        bedrock_quotas={MODEL: quota},
        faults=FaultPlan(latency_seconds=latency),
        map_max_concurrency=40,
    )
    # the handler modules are patched once the engine's mock runs (they are imported under it)
    with OfflineEngine(config) as engine, _early_release(early_release), traced(engine) as trace:
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
        "jobs": jobs,
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
        "trace": analyse(trace, began=began, makespan=makespan, quota=quota),
    }


def run_plans(*, jobs: int, images: int, quota: int, latency: float) -> dict[str, dict[str, Any]]:
    """The three variants of :data:`PLANS`, one after the other, with ``jobs`` jobs each."""
    variants = {}
    for name, (admission, early) in PLANS.items():
        print(f"{name}: {jobs} jobs x {images} images, quota {quota}, L = {latency} s", flush=True)
        variants[name] = run_variant(
            admission=admission, jobs=jobs, images=images, quota=quota, latency=latency, early_release=early
        )
        brief = {k: v for k, v in variants[name].items() if k not in {"job_seconds", "trace"}}
        print(json.dumps(brief), flush=True)
    return variants


def targets(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's three targets, measured on the variant as shipped."""
    with_ = variants["with_admission"]
    return {
        "throttled_images_with_admission": {"target": 0, "measured": with_["images_throttled"]},
        "refused_share_with_admission": {"target": "< 0.05", "measured": with_["refused_share"]},
        "throughput_fraction_with_admission": {
            "target": ">= 0.90",
            "measured": with_["throughput_fraction_of_quota"],
            "slot_held_until_release_slot": variants["with_admission_slot_held_until_release_slot"][
                "throughput_fraction_of_quota"
            ],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/admission.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--quota", type=int, default=4)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument(
        "--also-jobs", type=int, default=0, help="also run the three variants with this many jobs (0: not)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    started, load_start = time.perf_counter(), load_average()
    ctx = RunContext(quick=args.jobs < 50, latency=args.latency, repeats=1, results_dir=args.results_dir)
    shape = {"images": args.images, "quota": args.quota, "latency": args.latency}
    variants = run_plans(jobs=args.jobs, **shape)
    data: dict[str, Any] = {
        "model": MODEL,
        "jobs": args.jobs,
        "images_per_job": args.images,
        "quota_in_flight": args.quota,
        "variants": variants,
        "targets": targets(variants),
    }
    if args.also_jobs:
        fewer = run_plans(jobs=args.also_jobs, **shape)
        data["also"] = {"jobs": args.also_jobs, "variants": fewer, "targets": targets(fewer)}
    path = write_result(ctx, "admission", data, started=started, load_start=load_start)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

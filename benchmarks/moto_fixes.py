"""Does each of the engine's fixes to moto still pay? A 10-image request with every fix, with each one
left out, and with none (moto as shipped), interleaved; plus what each fix saves, counted.

    python benchmarks/moto_fixes.py                 # 7 repeats, L = 0.5 s; writes results/moto_fixes.json
    python benchmarks/moto_fixes.py --repeats 3 --results-dir /tmp/bench

The CPU figure is this process's CPU time for the request (every thread: the interpreter, the handlers,
moto's mocks); the Bedrock stand-in runs in a child process, so its rendering is not in it. A fix pays
when leaving it out costs CPU the noise between repeats does not explain. Figures are recorded in
``docs/decisions.md`` ("Three fixes to moto's interpreter").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import (
    RESULTS_DIR,
    BedrockProcess,
    RunContext,
    load_average,
    summarize,
    timed_engine_run,
    write_result,
)

from imagegen.runtime.moto_speedups import FIXES, MotoFixes

IMAGES = 10
#: variant -> the fixes it enters
VARIANTS: dict[str, tuple[str, ...]] = {
    "all_fixes": FIXES,
    **{f"without_{fix}": tuple(f for f in FIXES if f != fix) for fix in FIXES},
    "moto_as_shipped": (),
}


@contextmanager
def _fixes(names: tuple[str, ...]) -> Iterator[MotoFixes | None]:
    if not names:
        yield None
        return
    with MotoFixes(names) as fixes:
        yield fixes


def _per_call_ms(func: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def unit_costs_ms() -> dict[str, float]:
    import jsonpath_ng
    import jsonpath_ng.ext

    paths = ["$.request.prompt", "$.image.seed", "$.items[1].seed", "$.plan.branches", "$"]
    index = iter(range(10**9))
    return {
        "jsonpath_ng_ext_parse": _per_call_ms(lambda: jsonpath_ng.ext.parse(paths[next(index) % 5]), 300),
        "jsonpath_ng_parse": _per_call_ms(lambda: jsonpath_ng.parse(paths[next(index) % 5]), 300),
    }


@contextmanager
def _counting(owner: Any, attribute: str) -> Iterator[list[int]]:
    """Count calls of the function ``owner.attribute`` (a staticmethod stays one) while the block runs;
    afterwards the attribute is the very object it was."""
    saved = vars(owner)[attribute]
    function = saved.__func__ if isinstance(saved, staticmethod) else saved
    counter = [0]
    lock = threading.Lock()

    def counting(*args: Any, **kwargs: Any) -> Any:
        with lock:
            counter[0] += 1
        return function(*args, **kwargs)

    setattr(owner, attribute, staticmethod(counting) if isinstance(saved, staticmethod) else counting)
    try:
        yield counter
    finally:
        setattr(owner, attribute, saved)


def counts(engine: Any, fixes: tuple[str, ...]) -> dict[str, int]:
    """What one 10-image request makes after a first one: real JSONPath parses (jsonpath-ng's parser
    run), boto3 clients made (moto's ``boto_client_for`` is the only caller then: the handlers' are cached), definition parses."""
    import jsonpath_ng.parser
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.utils import boto_client

    with _fixes(fixes):
        timed_engine_run(engine, IMAGES, seed=11)
        with (
            _counting(jsonpath_ng.parser.JsonPathParser, "parse") as paths,
            _counting(boto_client.boto3, "client") as clients,
            _counting(AmazonStateLanguageParser, "parse") as programs,
        ):
            run = timed_engine_run(engine, IMAGES, seed=12)
    assert run.succeeded == IMAGES, run
    return {
        "jsonpath_parses": paths[0],
        "boto3_clients_created": clients[0],
        "definition_parses": programs[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/moto_fixes.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    from imagegen.runtime.engine import EngineConfig, OfflineEngine

    started, load_start = time.perf_counter(), load_average()
    ctx = RunContext(quick=False, latency=args.latency, repeats=args.repeats, results_dir=args.results_dir)
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    units = unit_costs_ms()
    print(f"unit costs (ms): {units}", flush=True)
    with BedrockProcess(args.latency) as server:
        config = EngineConfig(
            bedrock_endpoint=server.url,
            map_max_concurrency=40,
            max_images_per_request=40,
            moto_speedups=False,
        )
        with OfflineEngine(config) as engine:
            counted = {name: counts(engine, fixes) for name, fixes in VARIANTS.items()}
            print(f"per request: {counted}", flush=True)
            for repeat in range(args.repeats):
                for name, fixes in VARIANTS.items():
                    with _fixes(fixes):
                        timed_engine_run(engine, 1, seed=7)  # each set starts cold: warm it first
                        run = timed_engine_run(engine, IMAGES, seed=1000 + repeat)
                    assert run.succeeded == IMAGES, run
                    cpu[name].append(run.cpu)
                    wall[name].append(run.wall)
                print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    baseline = statistics.median(cpu["all_fixes"])
    variants: dict[str, dict[str, Any]] = {
        name: {
            "fixes": list(VARIANTS[name]),
            "cpu_seconds": summarize(cpu[name]),
            "wall_seconds": summarize(wall[name]),
            "cpu_ms_over_all_fixes": round((statistics.median(cpu[name]) - baseline) * 1000, 1),
            "per_request": counted[name],
        }
        for name in VARIANTS
    }
    for name, variant in variants.items():
        print(
            f"{name:28s} CPU median {variant['cpu_seconds']['median'] * 1000:6.1f} ms "
            f"(+{variant['cpu_ms_over_all_fixes']:5.1f} ms), wall median {variant['wall_seconds']['median']:.3f} s, "
            f"{variant['per_request']}"
        )
    data = {"images_per_request": IMAGES, "latency_seconds": args.latency, "unit_costs_ms": units}
    write_result(ctx, "moto_fixes", {**data, "variants": variants}, started=started, load_start=load_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())

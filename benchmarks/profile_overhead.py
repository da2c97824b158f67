"""Where the offline engine's time goes, and what ``imagegen.runtime.moto_speedups`` gains.

1. Unit costs, each measured alone: a JSONPath parse (``jsonpath_ng`` before 1.16 rebuilt its parser
   tables on every call), a boto3 client creation, parsing the ASL definition (antlr) and the deep copy
   of the parsed program the speed-ups give each execution instead, one ``describe_execution``
   poll through boto3 and one status read of moto's record (how ``engine.wait`` polls), a moto S3 put,
   Powertools' ``inject_lambda_context``, one 1024x1024 render of the stand-in.
2. How often each happens per request (counted in a real run with moto as shipped), so unit cost x
   count estimates the CPU a request burns in this process without the speed-ups.
3. A sampling profile of real runs (share of busy samples by category), with moto as shipped and
   with the engine's speed-ups.
4. Variants, interleaved within each repeat: moto as shipped (``IMAGEGEN_MOTO_SPEEDUPS=0``), the
   engine (JSONPath cache, client reuse, one parse per definition, status read from moto's record every
   10 ms: its default)
   and the engine waiting as it did before (``describe_execution`` every 50 ms).
5. The engine's default configuration: the Bedrock stand-in inside the engine's process (run after
   the main engine stopped, by ``finish``).
"""

from __future__ import annotations

import collections
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

from harness import (
    PROMPT,
    RunContext,
    Sampler,
    count_calls,
    count_operation,
    engine_request,
    load_average,
    moto_speedups_applied,
    ratio,
    summarize,
    timed_engine_run,
    write_result,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "moto_as_shipped": {"speedups": False, "wait": "engine"},
    "engine": {"speedups": True, "wait": "engine"},
    "engine_api_poll_50ms": {"speedups": True, "wait": "api_poll_50ms"},
}


def _per_call(func: Callable[[], Any], repeats: int) -> float:
    """Median seconds of one call of ``func`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def unit_costs(ctx: RunContext) -> dict[str, float]:
    """Milliseconds per operation, each measured alone in this process."""
    import boto3
    import jsonpath_ng.ext
    from aws_lambda_powertools import Logger
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    from imagegen.runtime.engine import _moto_execution
    from imagegen.runtime.lambda_router import LambdaContext
    from imagegen.standin.renderer import render_png

    engine = ctx.engine
    few = 3 if ctx.quick else 10
    definition = engine.sfn.describe_state_machine(stateMachineArn=engine.state_machines["jobs"])[
        "definition"
    ]
    arn = engine.start_execution(engine_request(1, 11), kind="jobs")
    engine.wait(arn)
    record = _moto_execution(arn)
    logger = Logger(service="bench")

    def plain(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return event

    decorated = logger.inject_lambda_context(clear_state=True)(plain)
    context = LambdaContext(function_name="bench")
    small, large = b"x" * 40_000, b"x" * 1_500_000
    program = AmazonStateLanguageParser.parse(definition)[0]
    ms = {
        "jsonpath_parse": _per_call(lambda: jsonpath_ng.ext.parser.parse("$.request.prompt"), few),
        "boto3_client_creation": _per_call(
            lambda: boto3.client(
                "lambda", region_name="us-east-1", aws_access_key_id="ak", aws_secret_access_key="sk"
            ),
            few,
        ),
        "asl_definition_parse": _per_call(
            lambda: AmazonStateLanguageParser.parse(definition), 2 if ctx.quick else 3
        ),
        # what each execution pays instead with imagegen.runtime.moto_speedups: a deep copy of the parsed program
        "asl_program_deepcopy": _per_call(lambda: copy.deepcopy(program), few),
        "describe_execution_poll": _per_call(
            lambda: engine.sfn.describe_execution(executionArn=arn), few * 2
        ),
        "status_read_moto_record": _per_call(lambda: record.status, 200) if record is not None else 0.0,
        "moto_s3_put_40kb": _per_call(
            lambda: engine.s3.put_object(Bucket=engine.config.bucket, Key="bench/small", Body=small), few
        ),
        "moto_s3_put_1_5mb": _per_call(
            lambda: engine.s3.put_object(Bucket=engine.config.bucket, Key="bench/large", Body=large), few
        ),
        "powertools_inject_lambda_context": _per_call(lambda: decorated({"a": 1}, context), 200)
        - _per_call(lambda: plain({"a": 1}, context), 200),
        "render_png_1024": _per_call(lambda: render_png(PROMPT, 1, 1024, 1024), 2 if ctx.quick else 3),
    }
    return {name: round(seconds * 1000, 4) for name, seconds in ms.items()}


def counts_per_request(ctx: RunContext, count: int) -> dict[str, Any]:
    """How many JSONPath parses, client creations and API polls one request of ``count`` images makes."""
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_events as events_task,
    )
    from moto.stepfunctions.parser.asl.utils import json_path

    with (
        count_calls(json_path, "parse") as interpreter_parses,
        count_calls(jsonpath_ng.ext, "parse") as events_parses,
        count_calls(lambda_eval_utils, "boto_client_for") as lambda_clients,
        count_calls(events_task, "boto_client_for") as events_clients,
        count_operation(ctx.engine.sfn, "DescribeExecution") as describes,
    ):
        run = timed_engine_run(ctx.engine, count, seed=77 + count)
    return {
        "count": count,
        "jsonpath_parses": interpreter_parses[0] + events_parses[0],
        "jsonpath_parses_interpreter": interpreter_parses[0],
        "jsonpath_parses_eventbridge_targets": events_parses[0],
        "boto3_clients_created": lambda_clients[0] + events_clients[0],
        "asl_parses": 1,
        "describe_execution_polls": describes[0],
        "wall_seconds": round(run.wall, 3),
        "cpu_seconds": round(run.cpu, 3),
    }


def estimate(units: dict[str, float], counts: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds per request by cause: unit cost x count."""
    return {
        "jsonpath_parses": round(units["jsonpath_parse"] * counts["jsonpath_parses"], 1),
        "boto3_clients": round(units["boto3_client_creation"] * counts["boto3_clients_created"], 1),
        "asl_parse": round(units["asl_definition_parse"] * counts["asl_parses"], 1),
        "polling": round(units["describe_execution_poll"] * counts["describe_execution_polls"], 1),
    }


def sample(ctx: RunContext) -> list[dict[str, Any]]:
    runs, counts = (1, (1,)) if ctx.quick else (3, (1, 4))
    with Sampler() as sampler:
        for i in range(runs):
            for n in counts:
                timed_engine_run(ctx.engine, n, seed=300 + 10 * i + n)
    return sampler.shares()


def side_by_side(
    ctx: RunContext, engine: Any, counts: tuple[int, ...], variants: list[str], repeats: int
) -> dict[str, Any]:
    """Median wall per variant and image count, the variants interleaved within each repeat."""
    walls: dict[str, dict[int, list[float]]] = {v: collections.defaultdict(list) for v in variants}
    cpus: dict[str, dict[int, list[float]]] = {v: collections.defaultdict(list) for v in variants}
    for name in variants:  # warm every variant once (caches, clients)
        with moto_speedups_applied(engine, VARIANTS[name]["speedups"]):
            timed_engine_run(engine, 1, seed=5, wait=VARIANTS[name]["wait"])
    for repeat in range(repeats):
        for n in counts:
            if n >= 40 and repeat > 0:  # the largest point once: it takes as long as all the others
                continue
            for name in variants:
                with moto_speedups_applied(engine, VARIANTS[name]["speedups"]):
                    run = timed_engine_run(
                        engine, n, seed=20_000 + 100 * repeat + n, wait=VARIANTS[name]["wait"]
                    )
                walls[name][n].append(run.wall)
                cpus[name][n].append(run.cpu)
    out: dict[str, Any] = {}
    for name in variants:
        medians = {n: statistics.median(walls[name][n]) for n in counts}
        out[name] = {
            "speedups": VARIANTS[name]["speedups"],
            "wait": VARIANTS[name]["wait"],
            "wall": {str(n): summarize(walls[name][n]) for n in counts},
            "cpu_seconds_median": {str(n): round(statistics.median(cpus[name][n]), 3) for n in counts},
            "overhead_seconds_wall1": round(medians[1] - ctx.latency, 4) if 1 in medians else None,
            "wall_over_wall1": {str(n): ratio(medians[n], medians[1]) for n in counts if 1 in medians},
        }
    return out


def run_with_engine(ctx: RunContext) -> None:
    """The measurements that use the main engine (Bedrock stand-in in its own process)."""
    started, load_start = time.perf_counter(), load_average()
    ctx.engine.run(engine_request(1, 1), kind="jobs")
    with moto_speedups_applied(ctx.engine, False):  # where moto as shipped spends it: why the speed-ups exist
        units = unit_costs(ctx)
        ctx.log(f"  unit costs (ms): {units}")
        counted = [counts_per_request(ctx, n) for n in ((1,) if ctx.quick else (1, 4))]
        shares = sample(ctx)
    estimates = {str(c["count"]): estimate(units, c) for c in counted}
    ctx.log(f"  moto as shipped, top sampled categories: {[s['category'] for s in shares[:4]]}")
    shares_engine = sample(ctx)
    ctx.log(f"  engine, top sampled categories: {[s['category'] for s in shares_engine[:4]]}")
    counts = (1,) if ctx.quick else (1, 4, 40)
    variants = ["moto_as_shipped", "engine"] if ctx.quick else list(VARIANTS)
    repeats = 1 if ctx.quick else 2
    variants_data = side_by_side(ctx, ctx.engine, counts, variants, repeats)
    ctx.log(
        "  variants, wall(1): "
        + ", ".join(f"{k} {v['wall']['1']['median']:.2f} s" for k, v in variants_data.items())
    )
    ctx.extras["profile"] = {
        "started": started,
        "load_start": load_start,
        "unit_costs_ms": units,
        "per_request_counts": counted,
        "estimated_cpu_ms_per_request": estimates,
        "sampled_busy_shares": shares,
        "sampled_busy_shares_engine": shares_engine,
        "variants_out_of_process_server": variants_data,
    }


def finish(ctx: RunContext) -> dict[str, Any]:
    """The engine's default configuration (stand-in in the same process), then write profile.json."""
    from imagegen.runtime.engine import EngineConfig, OfflineEngine
    from imagegen.standin.bedrock_server import FaultPlan

    data = ctx.extras.pop("profile")
    if ctx.quick:
        data["in_process_server"] = None  # skipped in quick mode: one more engine start
    else:
        config = EngineConfig(faults=FaultPlan(latency_seconds=ctx.latency), map_max_concurrency=40)
        with OfflineEngine(config) as engine:
            engine.run(engine_request(1, 1), kind="jobs")
            data["in_process_server"] = side_by_side(ctx, engine, (1, 4, 40), ["engine"], 1)
    started, load_start = data.pop("started"), data.pop("load_start")
    data["latency_seconds"] = ctx.latency
    write_result(ctx, "profile", data, started=started, load_start=load_start)
    return data

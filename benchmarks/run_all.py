"""Run every benchmark and write ``benchmarks/results/<name>.json`` (see ``benchmarks/README.md``).

    python benchmarks/run_all.py              # full run (< 10 minutes on 2 cores)
    python benchmarks/run_all.py --quick      # smoke run (< 60 s): fewer points and repeats
    python benchmarks/run_all.py --only fanout,cost --latency 0.5

One Bedrock stand-in (fixed latency L, in a child process) serves every part, and one offline engine
runs the real ASL and handlers; the engine's default configuration with an in-process server is
measured last, as a variant, in ``profile``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cold_start
import concurrency
import cost
import fanout
import manifest_checks
import profile_overhead
import report
from harness import RESULTS_DIR, BedrockProcess, RunContext, load_average

PARTS = ("fanout", "concurrency", "cost", "profile", "cold_start", "manifest_checks")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/run_all.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: fewer points and repeats (< 60 s)")
    parser.add_argument("--latency", type=float, default=0.5, help="model latency L of the stand-in (s)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per point (default 4; quick 1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON files go")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--concurrent", type=int, default=None, help="concurrent requests (default 50; quick 3)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"unknown parts {unknown}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    ctx = RunContext(
        quick=args.quick,
        latency=args.latency,
        repeats=args.repeats or (1 if args.quick else 4),
        results_dir=args.results_dir,
        log=log,
    )
    ctx.extras["concurrent"] = args.concurrent or (3 if args.quick else 50)
    log(f"load average {load_average()}; parts {parts}; L = {ctx.latency} s; quick = {ctx.quick}")
    summaries: dict[str, Any] = {}
    if "cold_start" in parts:  # fresh subprocesses: before anything loads the machine further
        log("cold start: handler imports and the Lambda asset")
        summaries["cold_start"] = cold_start.run(ctx)
    if "manifest_checks" in parts:  # moto S3 only, no engine
        log("manifest checks: BuildManifest's HeadObject calls, one at a time and in parallel")
        summaries["manifest_checks"] = manifest_checks.run(ctx)
    engine_parts = [p for p in parts if p in ("fanout", "concurrency", "cost", "profile")]
    if engine_parts:
        from imagegen.runtime.engine import EngineConfig, OfflineEngine

        with BedrockProcess(ctx.latency) as server:
            ctx.bedrock_url = server.url
            ctx.extras["bedrock_process"] = server
            config = EngineConfig(
                bedrock_endpoint=server.url, map_max_concurrency=40, max_images_per_request=40
            )
            with OfflineEngine(config) as engine:
                ctx.engine = engine
                if "fanout" in parts:
                    log("fan-out and peers")
                    summaries.update(fanout.run(ctx))
                if "cost" in parts:
                    log("cost model")
                    summaries["cost"] = cost.run(ctx)
                if "concurrency" in parts:
                    log(f"concurrency: {ctx.extras['concurrent']} concurrent 4-image requests")
                    summaries["concurrency"] = concurrency.run(ctx)
                if "profile" in parts:
                    log("profile: where the time goes, variants side by side")
                    profile_overhead.run_with_engine(ctx)
            ctx.engine = None
            if "profile" in parts:
                log("profile: the engine's default (in-process Bedrock stand-in)")
                summaries["profile"] = profile_overhead.finish(ctx)
    (ctx.results_dir / "summary.md").write_text(report.render(ctx.results_dir))
    log(f"done in {time.perf_counter() - started:.0f} s; load average {load_average()}; tables in summary.md")
    written = sorted(p.name for p in ctx.results_dir.glob("*.json"))
    print(json.dumps({"results_dir": str(ctx.results_dir), "files": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``imagegen batch FILE.jsonl [--out DIR]``: run a batch of requests offline.

The file holds one request per line, the same JSON as ``POST /jobs`` or the console takes. The command
uploads it under ``batches/`` in the offline bucket and runs ``statemachine/batch_generate.asl.json``
on it, as the upload does on AWS; then it copies every line's images and manifest, and the batch
manifest, under ``DIR`` in the bucket's layout, prints the batch manifest on stdout and a line per
request on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imagegen.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, add_quota_options, apply_quota_options
from imagegen.runtime.batch import BatchProgress, download_batch
from imagegen.runtime.engine import EngineConfig, OfflineEngine


def print_progress(progress: BatchProgress) -> None:
    print(f"requests finished: {progress.finished}/{progress.total}", file=sys.stderr, flush=True)


def print_lines(manifest: dict[str, Any]) -> None:
    """One line per request: line number, status, images, request id or error."""
    for item in manifest["items"]:
        images = f"{item['succeeded']}/{item['requested']} images" if item["requested"] is not None else ""
        detail = item["error"] or item["request_id"] or ""
        message = f" - {item['message']}" if item["error"] and item["message"] else ""
        print(f"line {item['line']:>5}  {item['status']:<9} {images:<12} {detail}{message}", file=sys.stderr)


def cmd_batch(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        print(f"error: {source}: no such file", file=sys.stderr)
        return EXIT_INVALID
    config = EngineConfig(log_level="DEBUG" if args.verbose else "WARNING")
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        print(f"imagegen batch: {quota_error}", file=sys.stderr)
        return EXIT_INVALID
    with OfflineEngine(config) as engine:
        run = engine.run_batch(
            source,
            key=args.key,
            max_concurrency=args.max_concurrency,
            tolerated_failure_percentage=args.tolerated_failure_percentage,
            on_progress=None if args.quiet else print_progress,
        )
        if run.manifest is None:
            print(f"error: {run.result.error}: {run.result.message}", file=sys.stderr)
            return EXIT_INVALID if run.result.error == "InvalidBatch" else EXIT_FAILED
        path = download_batch(engine, run.manifest, Path(args.out))
    print(json.dumps(run.manifest, indent=2))
    if not args.quiet:
        print_lines(run.manifest)
        totals = run.manifest["images"]
        print(
            f"batch {run.manifest['status']}: {run.manifest['lines']} lines, {totals['succeeded']} of "
            f"{totals['requested']} images; files under {Path(args.out)}; batch manifest: {path}",
            file=sys.stderr,
        )
    if run.result.status != "SUCCEEDED":
        print(f"error: {run.result.error}: {run.result.message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_commands(subparsers: Any) -> None:
    """Add ``batch`` to the ``imagegen`` command."""
    parser = subparsers.add_parser(
        "batch",
        help="run a JSONL file of requests offline (one child workflow per line) and save the results",
        description="Runs the batch state machine offline on FILE (one JSON request per line): each line "
        "becomes its own request; a batch manifest reports every line.",
    )
    parser.add_argument("file", help="the JSONL file: one request per line, as POST /jobs takes it")
    parser.add_argument("--out", "-o", default="out", help="output directory (default: out)")
    parser.add_argument("--key", help="S3 key to upload the file to (default: batches/<file name>)")
    parser.add_argument("--max-concurrency", type=int, help="requests running at once (default 10)")
    parser.add_argument(
        "--tolerated-failure-percentage",
        type=float,
        help="share of lines that may fail before the batch fails (default 10)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    add_quota_options(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    parser.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    parser.set_defaults(func=cmd_batch)

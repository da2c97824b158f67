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
from typing import Any, TextIO

from imagegen.cli.exit_codes import CliError, ExitCode, usage_error
from imagegen.cli.options import (
    add_json_option,
    add_quota_options,
    add_timeout_option,
    apply_quota_options,
    check_out_dir,
    examples,
    wants_json,
)
from imagegen.runtime.batch import BatchProgress, default_batch_key, download_batch, save_finished_requests
from imagegen.runtime.engine import EngineConfig, OfflineEngine


def print_progress(progress: BatchProgress) -> None:
    print(f"requests finished: {progress.finished}/{progress.total}", file=sys.stderr, flush=True)


def print_lines(manifest: dict[str, Any], to: TextIO = sys.stderr) -> None:
    """One line per request: line number, status, images, request id or error."""
    for item in manifest["items"]:
        images = f"{item['succeeded']}/{item['requested']} images" if item["requested"] is not None else ""
        detail = item["error"] or item["request_id"] or ""
        message = f" - {item['message']}" if item["error"] and item["message"] else ""
        print(f"line {item['line']:>5}  {item['status']:<9} {images:<12} {detail}{message}", file=to)


def cmd_batch(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise usage_error(f"{source}: no such file (one JSON request per line)")
    out_dir = check_out_dir(args.out)
    config = EngineConfig(log_level="DEBUG" if args.verbose else "WARNING")
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        raise usage_error(quota_error)
    key = args.key or default_batch_key(source)
    with OfflineEngine(config) as engine:
        try:
            run = engine.run_batch(
                source,
                key=key,
                max_concurrency=args.max_concurrency,
                tolerated_failure_percentage=args.tolerated_failure_percentage,
                timeout=args.timeout,
                on_progress=None if args.quiet else print_progress,
            )
        except (KeyboardInterrupt, TimeoutError) as stopped:
            kept = save_finished_requests(engine, key, out_dir)
            why = (
                "interrupted"
                if isinstance(stopped, KeyboardInterrupt)
                else f"not done after --timeout {args.timeout:g} s"
            )
            code = ExitCode.INTERRUPTED if isinstance(stopped, KeyboardInterrupt) else ExitCode.TIMED_OUT
            said = f"the {len(kept)} requests that had finished are under {out_dir}/ (a manifest.json each)"
            raise CliError(
                code,
                f"{why}: an offline batch ends with this command; {said if kept else 'no request had finished'}",
            ) from None
        if run.manifest is None:
            code = ExitCode.INVALID if run.result.error == "InvalidBatch" else ExitCode.FAILED
            raise CliError(code, f"{run.result.error}: {run.result.message}")
        path = download_batch(engine, run.manifest, out_dir)
    totals = run.manifest["images"]
    summary = (
        f"batch {run.manifest['status']}: {run.manifest['lines']} lines, {totals['succeeded']} of "
        f"{totals['requested']} images; files under {out_dir}/; batch manifest: {path}"
    )
    if wants_json(args):
        print(json.dumps(run.manifest, indent=2))
        if not args.quiet:
            print_lines(run.manifest)
            print(summary, file=sys.stderr)
    else:
        print_lines(run.manifest, sys.stdout)
        print(summary)
    if run.result.status != "SUCCEEDED":
        raise CliError(ExitCode.FAILED, f"{run.result.error}: {run.result.message}")
    if totals["succeeded"] < totals["requested"]:
        return int(ExitCode.PARTIAL if totals["succeeded"] else ExitCode.FAILED)
    return int(ExitCode.OK)


def add_commands(subparsers: Any) -> None:
    """Add ``batch`` to the ``imagegen`` command."""
    parser = subparsers.add_parser(
        "batch",
        help="run a JSONL file of requests offline (one child workflow per line) and save the results",
        description="Runs the batch state machine offline on FILE (one JSON request per line): each line "
        "becomes its own request; a batch manifest reports every line. Ctrl-C keeps the requests that "
        "had finished.",
        epilog=examples(
            "imagegen batch requests.jsonl --out out/", "imagegen batch requests.jsonl --json > batch.json"
        ),
    )
    parser.add_argument("file", help="the JSONL file: one request per line, as POST /jobs takes it")
    parser.add_argument("--out", "-o", default="out", help="output directory")
    parser.add_argument("--key", help="S3 key to upload the file to (default: batches/<file name>)")
    parser.add_argument("--max-concurrency", type=int, help="requests running at once (default 10)")
    parser.add_argument(
        "--tolerated-failure-percentage",
        type=float,
        help="share of lines that may fail before the batch fails (default 10)",
    )
    add_json_option(parser)
    add_timeout_option(parser)
    parser.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    add_quota_options(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    parser.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    parser.set_defaults(func=cmd_batch)

"""``imagegen generate``: run the workflow offline and write the images and ``manifest.json`` under ``--out``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imagegen.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_quota_options,
    add_request_options,
    apply_quota_options,
    request_from_args,
)
from imagegen.cli.outputs import local_folder, write_local_manifest
from imagegen.runtime.engine import EngineConfig, ExecutionResult, OfflineEngine, Progress


def print_progress(progress: Progress) -> None:
    if progress.total is None:
        print("validating request ...", file=sys.stderr, flush=True)
        return
    finished = progress.done + progress.failed
    bar = "#" * finished + "." * (progress.total - finished)
    print(f"images [{bar}] {finished}/{progress.total}", file=sys.stderr, flush=True)


def save_outputs(engine: OfflineEngine, manifest: dict[str, Any], out_dir: Path) -> Path:
    """Write the images under ``out_dir/<output folder>/<request id>`` and a local manifest.json beside
    them."""
    target = out_dir / local_folder(manifest)
    by_name = {p.name: p for p in engine.download(manifest, target)}
    files = {i["key"]: by_name[Path(i["key"]).name] for i in manifest["images"] if i.get("key")}
    return write_local_manifest(manifest, files, target)


def report_failure(result: ExecutionResult) -> int:
    print(f"error: {result.error}: {result.message}", file=sys.stderr)
    return EXIT_INVALID if result.error == "InvalidRequest" else EXIT_FAILED


def cmd_generate(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    config = EngineConfig(log_level="DEBUG" if args.verbose else "WARNING")
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        print(f"imagegen generate: {quota_error}", file=sys.stderr)
        return EXIT_INVALID
    with OfflineEngine(config) as engine:
        result = engine.run(request, kind="jobs", on_progress=None if args.quiet else print_progress)
        if result.status != "SUCCEEDED" or result.output is None:
            if result.error in {"AllImagesFiltered", "ImagesThrottled", "ImagesFailed"}:
                print(f"the manifest with each image's reason: {result.message}", file=sys.stderr)
            return report_failure(result)
        manifest_path = save_outputs(engine, result.output, Path(args.out))
    with manifest_path.open() as f:
        local = json.load(f)
    print(json.dumps(local, indent=2))
    if not args.quiet:
        print(
            f"{local['succeeded']} of {local['requested']} images written under {manifest_path.parent}"
            f" ({local['filtered']} filtered, {local['failed']} failed); manifest: {manifest_path}",
            file=sys.stderr,
        )
    return EXIT_OK


def add_commands(subparsers: Any) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="run the workflow offline: images and manifest.json on disk",
        description="Runs the state machine offline (moto's interpreter, moto S3, the Lambda handlers "
        "in-process, a local Bedrock-protocol server that renders deterministic placeholder images).",
    )
    add_request_options(gen)
    gen.add_argument("--out", "-o", default="out", help="output directory (default: out)")
    gen.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    add_quota_options(gen)
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    gen.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    gen.set_defaults(func=cmd_generate)

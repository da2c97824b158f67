"""The ``imagegen`` command.

``imagegen generate "a red porsche" --count 4 --out out/`` runs the workflow offline and writes the
images and ``manifest.json`` under ``out/``. Other commands are added by :func:`build_parser` from
the modules listed in ``COMMAND_MODULES`` (each has ``add_commands(subparsers)``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from imagegen.engine import EngineConfig, ExecutionResult, OfflineEngine, Progress
from imagegen.outputs import write_local_manifest

#: Modules that add sub-commands: ``add_commands(subparsers) -> None``.
COMMAND_MODULES: list[str] = ["imagegen.api_commands", "imagegen.batch_commands"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request (the same contract as the API, console and events) from CLI options."""
    request: dict[str, Any] = {}
    if args.request_file:
        loaded = json.loads(Path(args.request_file).read_text())
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.request_file}: the request must be a JSON object")
        request.update(loaded)
    if args.prompt is not None:
        request["prompt"] = args.prompt
    options = {
        "negative_prompt": args.negative,
        "count": args.count,
        "model": args.model,
        "width": args.width,
        "height": args.height,
        "aspect_ratio": args.aspect_ratio,
        "quality": args.quality,
        "cfg_scale": args.cfg_scale,
        "seed": args.seed,
        "style": args.style,
        "output_folder": args.output_folder,
        "file_name_prefix": args.prefix,
        "idempotency_key": args.idempotency_key,
    }
    request.update({k: v for k, v in options.items() if v is not None})
    return request


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Options that build a request; shared by the commands that send one."""
    parser.add_argument("prompt", nargs="?", help="what to draw (or give --request-file)")
    parser.add_argument("--request-file", help="a JSON request, as sent to the API or the console")
    parser.add_argument("--count", "-n", type=int, help="number of images (default 4)")
    parser.add_argument("--model", "-m", help="registry id, e.g. stable-image-core, nova-canvas")
    parser.add_argument("--negative", help="negative prompt")
    parser.add_argument("--seed", type=int, help="seed of the first image (image i gets seed+i)")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--aspect-ratio", help="e.g. 16:9 (Stability models)")
    parser.add_argument("--quality", choices=["standard", "premium"])
    parser.add_argument("--cfg-scale", type=float)
    parser.add_argument("--style", help="Nova Canvas style preset")
    parser.add_argument("--output-folder", help="S3 folder, e.g. 000/111")
    parser.add_argument("--prefix", help="file name prefix")
    parser.add_argument("--idempotency-key", help="same key, same job")


def print_progress(progress: Progress) -> None:
    if progress.total is None:
        print("validating request ...", file=sys.stderr, flush=True)
        return
    finished = progress.done + progress.failed
    bar = "#" * finished + "." * (progress.total - finished)
    print(f"images [{bar}] {finished}/{progress.total}", file=sys.stderr, flush=True)


def save_outputs(engine: OfflineEngine, manifest: dict[str, Any], out_dir: Path) -> Path:
    """Write the images under ``out_dir/<S3 prefix>`` and a local manifest.json beside them."""
    target = out_dir / manifest["prefix"]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagegen",
        description="Parallel image generation on Amazon Bedrock with AWS Step Functions; runs offline too.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate",
        help="run the workflow offline: images and manifest.json on disk",
        description="Runs the state machine offline (moto's interpreter, moto S3, the Lambda handlers "
        "in-process, a local Bedrock-protocol server that renders deterministic placeholder images).",
    )
    add_request_options(gen)
    gen.add_argument("--out", "-o", default="out", help="output directory (default: out)")
    gen.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    gen.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    gen.set_defaults(func=cmd_generate)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""``imagegen generate``: run the workflow offline and write the images and ``manifest.json`` under ``--out``.

Everything the user gave (the request file, ``--out``, ``--quota``) is checked before the engine starts;
``--dry-run`` checks the request as the workflow's first step does (``core/planning.check_request``)
and prints its plan without generating. A request that makes no image still writes its manifest (each
image's reason) under ``--out``; Ctrl-C writes the images already made.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from imagegen.cli.exit_codes import CliError, ExitCode
from imagegen.cli.options import (
    add_json_option,
    add_quota_options,
    add_request_options,
    add_timeout_option,
    apply_quota_options,
    check_out_dir,
    examples,
    request_from_args,
    wants_json,
)
from imagegen.cli.outputs import exit_code_of, local_folder, print_manifest, write_local_manifest
from imagegen.runtime.engine import EngineConfig, ExecutionResult, OfflineEngine, Progress

#: The workflow's errors when no image was made; the manifest was stored first (core/manifest.py).
NO_IMAGE_ERRORS = frozenset({"AllImagesFiltered", "ImagesThrottled", "ImagesFailed"})


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


def stored_manifest(engine: OfflineEngine, result: ExecutionResult) -> dict[str, Any] | None:
    """The manifest a request that made no image stored before failing (None when it stored none)."""
    from image_pipeline.core.manifest import stored_manifest_location

    where = stored_manifest_location(result.message) if result.error in NO_IMAGE_ERRORS else None
    if where is None:
        return None
    body = engine.s3.get_object(Bucket=where[0], Key=where[1])["Body"].read()
    return dict(json.loads(body))


def keep_what_was_made(engine: OfflineEngine, name: str, out_dir: Path) -> tuple[Path, int]:
    """After Ctrl-C: copy the images request ``name`` had stored to ``out_dir/images/<name>``."""
    target = out_dir / "images" / name
    keys = [k for k in engine.list_keys() if f"images/{name}/" in k and k.endswith(".png")]
    for key in keys:
        target.mkdir(parents=True, exist_ok=True)
        body = engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read()
        (target / Path(key).name).write_bytes(body)
    return target, len(keys)


def check_first(request: dict[str, Any], config: EngineConfig) -> Any:
    """Check ``request`` as the workflow's first step will (``core/planning.check_request``), before
    the engine starts: an invalid request (exit code 3) naming every field to change."""
    from image_pipeline.contract.errors import InvalidRequest
    from image_pipeline.core.planning import check_request

    try:
        return check_request(request, config.handler_settings())
    except InvalidRequest as exc:
        fields = "; ".join(str(e) for e in exc.errors)
        raise CliError(ExitCode.INVALID, f"InvalidRequest: {fields}") from None


def dry_run(checked: Any, args: argparse.Namespace) -> int:
    """Print the plan of a checked request; nothing is generated."""
    from image_pipeline.core.cost import image_price
    from image_pipeline.core.planning import plan
    from image_pipeline.core.tenancy import console_caller

    request_id = "REQUEST-ID"
    planned = plan(checked, request_id, caller=console_caller())
    price = image_price(planned["model"], checked.request.quality)
    folder = str(Path(args.out) / local_folder(planned)).replace(request_id, "<request id>")
    shown = {
        "dry_run": True,
        "model": planned["model"],
        "request": planned["request"],
        "out": folder,
        "images": [
            {"index": i["index"], "seed": i["seed"], "file": Path(i["key"]).name} for i in planned["images"]
        ],
        "warnings": planned["warnings"],
        "usd_per_image_deployed": price,
    }
    if wants_json(args):
        print(json.dumps(shown, indent=2))
        return int(ExitCode.OK)
    seeds = [i["seed"] for i in planned["images"]]
    print(
        f"the request is valid: {len(seeds)} images with {planned['model']}, seeds {', '.join(map(str, seeds))}"
    )
    print(f"they would be written to {folder}/")
    if price is not None:
        print(
            f"deployed, Bedrock would charge about ${price * len(seeds):.2f} (${price} an image); offline is free"
        )
    for warning in planned["warnings"]:
        print(f"warning: {warning}")
    print("nothing was generated (--dry-run)")
    return int(ExitCode.OK)


def cmd_generate(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    out_dir = check_out_dir(args.out)
    config = EngineConfig(log_level="DEBUG" if args.verbose else "WARNING")
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        raise CliError(ExitCode.USAGE, quota_error)
    checked = check_first(request, config)
    if args.dry_run:
        return dry_run(checked, args)
    name = str(uuid.uuid4())
    with OfflineEngine(config) as engine:
        arn = engine.start_execution(request, name=name, kind="jobs")
        try:
            result = engine.wait(
                arn, timeout=args.timeout, on_progress=None if args.quiet else print_progress
            )
        except KeyboardInterrupt:
            target, made = keep_what_was_made(engine, name, out_dir)
            kept = f"the {made} images already made are in {target}/" if made else "no image was made yet"
            raise CliError(
                ExitCode.INTERRUPTED,
                f"interrupted: an offline run ends with this command ({kept}); run it again to make "
                "them all (give --seed to get the same images)",
            ) from None
        except TimeoutError:
            target, made = keep_what_was_made(engine, name, out_dir)
            raise CliError(
                ExitCode.TIMED_OUT,
                f"not done after --timeout {args.timeout:g} s; {made} images were written to {target}/",
            ) from None
        if result.status == "SUCCEEDED" and result.output is not None:
            manifest_path = save_outputs(engine, result.output, out_dir)
        else:
            failed = stored_manifest(engine, result)
            if failed is None:
                code = ExitCode.INVALID if result.error == "InvalidRequest" else ExitCode.FAILED
                raise CliError(code, f"{result.error}: {result.message}")
            manifest_path = save_outputs(engine, failed, out_dir)
    local = json.loads(manifest_path.read_text())
    print_manifest(local, manifest_path, as_json=wants_json(args), offline=True, quiet=args.quiet)
    return int(exit_code_of(local))


def add_commands(subparsers: Any) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="run the workflow offline: images and manifest.json on disk",
        description="Runs the state machine offline (moto's interpreter, moto S3, the Lambda handlers "
        "in-process, a local Bedrock-protocol server that renders deterministic placeholder images: "
        "not a model's pictures). On a terminal it prints what was written where; piped, or with "
        "--json, the manifest.",
        epilog=examples(
            'imagegen generate "a lighthouse at dusk" -n 4 --seed 42 --out out/',
            "imagegen generate --request-file tests/events/request_seed001.json",
            'imagegen generate "a red porsche" --model stable-image-ultra --dry-run',
            'imagegen generate "a cat" --json | jq .images[].file',
        ),
    )
    add_request_options(gen)
    gen.add_argument("--out", "-o", default="out", help="directory the images and manifest.json go under")
    gen.add_argument(
        "--dry-run", action="store_true", help="check the request and print its plan; generate nothing"
    )
    add_json_option(gen)
    add_timeout_option(gen)
    gen.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    add_quota_options(gen)
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    gen.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    gen.set_defaults(func=cmd_generate)

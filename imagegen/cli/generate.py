"""``imagegen generate``: run the workflow offline and write the images and ``manifest.json`` under ``--out``.

Everything the user gave (the request file, ``--out``, ``--quota``, ``--webhook``) is checked before the
engine starts; with ``--webhook`` (and ``--webhook-secret``) the job's webhooks are delivered, signed, as
``imagegen serve`` delivers them, and the command waits for them before it ends;
``--dry-run`` checks the request as the workflow's first step does (``core/planning.check_request``)
and prints its plan without generating. A request that makes no image still writes its manifest (each
image's reason) under ``--out``; Ctrl-C writes the images already made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from image_pipeline.core.webhooks import NETWORK_VARIABLE

from imagegen.cli.exit_codes import CliError, ExitCode, usage_error
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
from imagegen.runtime.local_webhooks import LocalWebhooks

#: Seconds between a failed webhook attempt and the next under ``generate`` (4 attempts; the command
#: waits for them before it ends, so they are few and short).
WEBHOOK_SCHEDULE = (1, 2, 4)
#: The longest ``generate`` waits for its webhooks after the images: every attempt's POST timeout (5 s)
#: and the waits between them.
WEBHOOK_WAIT_SECONDS = 4 * 5 + sum(WEBHOOK_SCHEDULE) + 5

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


def save_result(engine: OfflineEngine, result: ExecutionResult, out_dir: Path) -> Path:
    """The run's images and local manifest.json under ``out_dir``: its output when it succeeded, the
    manifest it stored before failing otherwise; a run that stored none is the CliError of its error."""
    if result.status == "SUCCEEDED" and result.output is not None:
        return save_outputs(engine, result.output, out_dir)
    failed = stored_manifest(engine, result)
    if failed is None:
        code = ExitCode.INVALID if result.error == "InvalidRequest" else ExitCode.FAILED
        raise CliError(code, f"{result.error}: {result.message}")
    return save_outputs(engine, failed, out_dir)


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


def webhook_options(args: argparse.Namespace, request: dict[str, Any]) -> str | None:
    """``--webhook`` (and ``--webhook-event``) into the request, as ``imagegen submit`` sends them; the
    secret that signs them offline (``--webhook-secret``, as ``imagegen serve`` takes it), or None."""
    from imagegen.runtime.local_webhooks import secret_problem

    if not args.webhook:
        if args.webhook_event or args.webhook_secret:
            raise usage_error("--webhook-event and --webhook-secret need --webhook")
        return None
    if not args.webhook_secret:
        raise usage_error(
            "--webhook needs --webhook-secret whsec_<base64> (the secret its receiver verifies)"
        )
    problem = secret_problem(args.webhook_secret)
    if problem:
        raise usage_error(f"--webhook-secret is {problem}")
    request["webhook"] = args.webhook
    if args.webhook_event:
        request["webhook_events"] = args.webhook_event
    # offline, a webhook may point to this machine only (as under imagegen serve): checked so, now
    os.environ[NETWORK_VARIABLE] = "loopback"
    return str(args.webhook_secret)


def deliveries_done(engine: OfflineEngine, name: str, expected: int, seconds: float) -> list[dict[str, Any]]:
    """The delivery records of execution ``name`` once ``expected`` of them are delivered or given up
    (or after ``seconds``: what there is then)."""
    from image_pipeline.core.webhooks import job_webhooks

    deadline = time.monotonic() + seconds
    while True:
        records = job_webhooks(engine.s3, engine.config.bucket, name)
        finished = [r for r in records if r.get("delivered_at") or r.get("dead_lettered")]
        if len(finished) >= expected or time.monotonic() >= deadline:
            return records
        time.sleep(0.1)


def report_webhooks(records: list[dict[str, Any]], expected: int) -> None:
    delivered = sum(1 for r in records if r.get("delivered_at"))
    print(f"webhook: {delivered} of {expected} deliveries made", file=sys.stderr, flush=True)
    for record in records:
        if not record.get("delivered_at"):
            what = record["event"] + (f" {record['index']}" if record.get("index") is not None else "")
            print(
                f"webhook: {what} not delivered after {record.get('attempts', 0)} attempts "
                f"({record.get('last_error') or 'not attempted'})",
                file=sys.stderr,
                flush=True,
            )


def cmd_generate(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    webhook_secret = webhook_options(args, request)
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
    with OfflineEngine(config) as engine, contextlib.ExitStack() as extras:
        if webhook_secret is not None:  # delivered as imagegen serve delivers them, then waited for
            extras.enter_context(
                LocalWebhooks(engine, secret=webhook_secret, schedule=WEBHOOK_SCHEDULE, max_attempts=4)
            )
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
        manifest_path = save_result(engine, result, out_dir)
        if webhook_secret is not None:
            events: list[str] = request.get("webhook_events") or ["completed"]
            images: list[Any] = json.loads(manifest_path.read_text()).get("images") or []
            expected = (len(images) if "image" in events else 0) + (1 if "completed" in events else 0)
            report_webhooks(deliveries_done(engine, name, expected, WEBHOOK_WAIT_SECONDS), expected)
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
    gen.add_argument(
        "--webhook",
        help="POST the job there when it ends, signed, as imagegen submit --webhook (this machine only)",
    )
    gen.add_argument(
        "--webhook-event",
        action="append",
        choices=["completed", "image"],
        help="what the webhook is told (repeatable; default completed); image: each image as it is stored",
    )
    gen.add_argument(
        "--webhook-secret",
        help="the Standard Webhooks secret (whsec_<base64>) the deliveries are signed with",
    )
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    gen.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    gen.set_defaults(func=cmd_generate)

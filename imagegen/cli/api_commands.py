"""``imagegen serve`` (the API offline) and the API client commands: ``submit``, ``status``, ``wait``
and ``models``. The client commands talk to ``--api`` (default ``$IMAGEGEN_API_URL`` or the local
server) with ``--api-key`` (default ``$IMAGEGEN_API_KEY``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from imagegen.cli.client import DEFAULT_API_URL, ClientApiError, ImagegenClient
from imagegen.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_quota_options,
    add_request_options,
    apply_quota_options,
    request_from_args,
)
from imagegen.cli.outputs import local_folder

#: Job errors that mean "change the request", as the CLI's ``generate`` reports them.
_INVALID_ERRORS = {"InvalidRequest", "IdempotencyKeyReused"}


def add_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the HTTP API offline (and the web page with --web-dir)",
        description="Serves the API of docs/api.md on this machine: the workflow runs offline (moto's "
        "interpreter, moto S3, the handlers in-process, placeholder images). OpenAPI docs at /docs.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--latency", type=float, default=0.0, help="simulated model latency in seconds")
    add_quota_options(serve)
    serve.add_argument("--web-dir", help="a static web page to serve at / (e.g. web)")
    serve.add_argument(
        "--cors-origin", action="append", help="an origin allowed to call the API from a browser (repeat)"
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="NAME=SECRET",
        help="require x-api-key: SECRET is the key of caller NAME, who sees only its own jobs and images "
        "(repeat for more callers; without it the server is open to one anonymous caller)",
    )
    serve.add_argument(
        "--link-lifetime-days",
        type=int,
        default=30,
        metavar="DAYS",
        help="how long image links (url, download_url, link) last, as imagegen:linkLifetimeDays deployed "
        "(default 30, imagegen:imageExpirationDays' default)",
    )
    serve.add_argument(
        "--webhook-secret",
        default=None,
        help="deliver requests' webhooks signed with this Standard Webhooks secret (whsec_<base64>); "
        "offline a webhook must point to this machine",
    )
    serve.set_defaults(func=cmd_serve)

    submit = subparsers.add_parser(
        "submit", help="start a job on an API (POST /jobs)", description="Starts a job and prints it."
    )
    add_request_options(submit)
    _add_api_options(submit)
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job (a line per image as it arrives), then download its images",
    )
    submit.add_argument("--out", "-o", default="out", help="output directory with --wait (default: out)")
    submit.add_argument("--webhook", help="POST the job there when it ends, signed (the request's webhook)")
    submit.add_argument(
        "--webhook-event",
        action="append",
        choices=["completed", "image"],
        help="what the webhook is told (repeatable; default completed)",
    )
    submit.set_defaults(func=cmd_submit)

    status = subparsers.add_parser("status", help="a job's status (GET /jobs/{id})")
    status.add_argument("job_id")
    _add_api_options(status)
    status.set_defaults(func=cmd_status)

    wait = subparsers.add_parser(
        "wait", help="wait for a job (a line per image as it arrives), then download its images"
    )
    wait.add_argument("job_id")
    wait.add_argument("--out", "-o", default="out", help="output directory (default: out)")
    _add_api_options(wait)
    wait.set_defaults(func=cmd_wait)

    models = subparsers.add_parser("models", help="the models an API offers (GET /models)")
    _add_api_options(models)
    models.set_defaults(func=cmd_models)


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        default=os.environ.get("IMAGEGEN_API_URL", DEFAULT_API_URL),
        help="API base URL with its stage (default: $IMAGEGEN_API_URL or %(default)s)",
    )
    parser.add_argument("--api-key", default=None, help="API key (default: $IMAGEGEN_API_KEY)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status calls")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def _client(args: argparse.Namespace) -> ImagegenClient:
    return ImagegenClient(args.api, api_key=args.api_key or os.environ.get("IMAGEGEN_API_KEY"))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _progress_printer(quiet: bool) -> Any:
    def show(job: dict[str, Any]) -> None:
        if quiet:
            return
        progress = job.get("progress") or {}
        total = progress.get("total")
        if job["status"] in {"queued", "running"} and total:
            finished = (progress.get("done") or 0) + (progress.get("failed") or 0)
            bar = "#" * finished + "." * max(total - finished, 0)
            print(f"{job['job_id']} images [{bar}] {finished}/{total}", file=sys.stderr, flush=True)
        else:
            print(f"{job['job_id']} {job['status']}", file=sys.stderr, flush=True)

    return show


def _fail(exc: Exception) -> int:
    if isinstance(exc, ClientApiError):
        print(f"error: {exc.status} {exc.error}: {exc.message}", file=sys.stderr)
        return EXIT_INVALID if exc.error in _INVALID_ERRORS or exc.status == 404 else EXIT_FAILED
    print(f"error: cannot reach the API: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _image_printer(job_id: str, quiet: bool) -> Any:
    """A line on stderr for each image as it arrives (stored, filtered or failed)."""
    arrived = 0

    def show(image: dict[str, Any]) -> None:
        nonlocal arrived
        arrived += 1
        if quiet:
            return
        total = (image.get("progress") or {}).get("total") or arrived
        bar = "#" * arrived + "." * max(total - arrived, 0)
        said = image.get("url") or image.get("reason_code") or ""
        print(
            f"{job_id} images [{bar}] {arrived}/{total}: #{image['index']} seed {image.get('seed')} "
            f"{image['status']} {said}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    return show


def _wait_and_download(api: ImagegenClient, job_id: str, args: argparse.Namespace) -> int:
    job = api.follow(
        job_id,
        on_image=_image_printer(job_id, args.quiet),
        on_progress=_progress_printer(args.quiet),
        poll=args.poll,
    )
    if job["status"] == "cancelled" and not args.quiet:  # what it made is kept: download that
        print(f"job {job_id} was cancelled; writing the images it made", file=sys.stderr)
    if job["status"] not in {"succeeded", "cancelled"}:
        error = job.get("error") or {}
        print(f"error: {error.get('error')}: {error.get('message')}", file=sys.stderr)
        return EXIT_INVALID if error.get("error") in _INVALID_ERRORS else EXIT_FAILED
    manifest = job["manifest"]
    target = Path(args.out) / local_folder(manifest)
    files = api.download(manifest, target)
    _print_json({k: job[k] for k in ("job_id", "status", "started_at", "stopped_at")} | {"out": str(target)})
    if not args.quiet:
        print(
            f"{len(files)} of {manifest['requested']} images written under {target} "
            f"({manifest['filtered']} filtered, {manifest['failed']} failed); "
            f"manifest: {target / 'manifest.json'}",
            file=sys.stderr,
        )
    return EXIT_OK if job["status"] == "succeeded" else EXIT_FAILED


def cmd_submit(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    if args.webhook:
        request["webhook"] = args.webhook
    if args.webhook_event:
        request["webhook_events"] = args.webhook_event
    try:
        with _client(args) as api:
            job = api.submit(request)
            if not args.wait:
                _print_json(job)
                return EXIT_OK
            if not args.quiet:
                print(f"job {job['job_id']} {job['status']}", file=sys.stderr, flush=True)
            return _wait_and_download(api, job["job_id"], args)
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            _print_json(api.status(args.job_id))
            return EXIT_OK
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_wait(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            return _wait_and_download(api, args.job_id, args)
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_models(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            _print_json(api.models())
            return EXIT_OK
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from imagegen.runtime.engine import EngineConfig, OfflineEngine
    from imagegen.runtime.local_api import create_app
    from imagegen.runtime.local_auth import parse_api_keys
    from imagegen.runtime.local_webhooks import LocalWebhooks, secret_problem

    try:
        keys = parse_api_keys(args.api_key)
    except ValueError as exc:
        print(f"imagegen serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not 1 <= args.link_lifetime_days <= 3650:
        print("imagegen serve: --link-lifetime-days takes 1 to 3650 days", file=sys.stderr)
        return EXIT_INVALID
    config = EngineConfig()
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        print(f"imagegen serve: {quota_error}", file=sys.stderr)
        return EXIT_INVALID
    secret_error = secret_problem(args.webhook_secret) if args.webhook_secret else None
    if secret_error:
        print(f"imagegen serve: --webhook-secret is {secret_error}", file=sys.stderr)
        return EXIT_INVALID
    with OfflineEngine(config) as engine, contextlib.ExitStack() as extras:
        if args.webhook_secret:
            extras.enter_context(LocalWebhooks(engine, secret=args.webhook_secret))
        app = create_app(
            engine,
            web_dir=args.web_dir,
            cors_origins=args.cors_origin,
            api_keys=keys,
            link_lifetime_seconds=args.link_lifetime_days * 24 * 3600,
        )
        print(
            f"imagegen API (offline) on http://{args.host}:{args.port}  docs: /docs"
            + ("  web page: /" if args.web_dir else "")
            + (f"  callers: {', '.join(keys)} (x-api-key)" if keys else "  open: no API key"),
            file=sys.stderr,
            flush=True,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK

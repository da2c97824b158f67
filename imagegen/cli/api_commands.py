"""``imagegen serve`` (the API offline) and the API client commands: ``submit``, ``status``, ``wait``
and ``models``. The client commands find the API and its credentials as :mod:`imagegen.cli.configure`
says (their flags, the environment, ``imagegen configure``'s file), with an API key or, for a
deployment with IAM authorization, SigV4 signatures made from the user's AWS credentials."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from image_pipeline.core.tenancy import Caller

from imagegen.cli.client import ClientApiError, ImagegenClient, SigV4
from imagegen.cli.configure import AUTH_MODES, ApiSettings, resolve_settings
from imagegen.cli.exit_codes import CliError, ExitCode, usage_error
from imagegen.cli.options import (
    EXIT_OK,
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
from imagegen.cli.outputs import exit_code_of, format_table, local_folder, print_manifest

#: Job errors that mean "change the request".
_INVALID_ERRORS = {"InvalidRequest", "IdempotencyKeyReused", "JobNotFound"}
#: The order a job's status moves in; a later answer never shows an earlier one.
_STATUS_ORDER = {"queued": 0, "running": 1, "cancelling": 2, "succeeded": 3, "failed": 3, "cancelled": 3}


def cli_error_of(exc: BaseException) -> CliError | None:
    """The exit code and one-line message of an error of the API client; None for any other error."""
    if isinstance(exc, ClientApiError):
        said = f"{exc.status} {exc.error}: {exc.message}"
        if exc.status in {401, 403}:
            return CliError(
                ExitCode.UNREACHABLE,
                f"{said} (the API refused the credentials: check the key or the auth mode with "
                "imagegen configure --show)",
            )
        if exc.error in _INVALID_ERRORS or exc.status in {400, 404, 422}:
            return CliError(ExitCode.INVALID, said)
        return CliError(ExitCode.FAILED, said)
    if isinstance(exc, httpx.HTTPError):
        where = f" at {exc.request.url.copy_with(query=None)}" if _has_request(exc) else ""
        return CliError(
            ExitCode.UNREACHABLE,
            f"cannot reach the API{where} ({type(exc).__name__}: {exc}); is imagegen serve running, or "
            "is the URL right (--api, IMAGEGEN_API_URL, imagegen configure)?",
        )
    return None


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


def add_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the HTTP API offline (and the web page with --web-dir)",
        description="Serves the API of docs/api.md on this machine: the workflow runs offline (moto's "
        "interpreter, moto S3, the handlers in-process, placeholder images). OpenAPI docs at /docs.",
        epilog=examples(
            "imagegen serve --web-dir web                               # API and web page on :8000",
            "imagegen serve --port 8080 --api-key alice=SECRET1 --api-key bob=SECRET2",
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
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
        "--daily-spend-usd",
        action="append",
        default=[],
        metavar="[NAME=]USD",
        help="a spend ceiling per UTC day from the cost model: USD for every caller (as "
        "imagegen:dailySpendLimitUsd deployed), NAME=USD for the --api-key NAME alone (as imagegen keys "
        "create --daily-spend-usd); repeatable; past it a request is 429 SpendLimitExceeded (default: none)",
    )
    serve.add_argument(
        "--webhook-secret",
        default=None,
        help="deliver requests' webhooks signed with this Standard Webhooks secret (whsec_<base64>); "
        "offline a webhook must point to this machine",
    )
    serve.set_defaults(func=cmd_serve)

    submit = subparsers.add_parser(
        "submit",
        help="start a job on an API (POST /jobs)",
        description="Starts a job and prints it; with --wait, follows it and writes its images and "
        "manifest.json under --out (the same output as generate).",
        epilog=examples(
            'imagegen submit "a red porsche" -n 4 --wait --out out/',
            'imagegen submit "a red porsche" --idempotency-key porsche-1   # prints the job; imagegen wait ID',
            'imagegen submit "a red porsche" --webhook https://example.com/hook',
        ),
    )
    add_request_options(submit, idempotency=True)
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job (a line per image as it arrives), then download its images",
    )
    submit.add_argument("--out", "-o", help="output directory (with --wait; default: out)")
    submit.add_argument("--webhook", help="POST the job there when it ends, signed (the request's webhook)")
    submit.add_argument(
        "--webhook-event",
        action="append",
        choices=["completed", "image"],
        help="what the webhook is told (repeatable; default completed)",
    )
    _add_api_options(submit)
    add_timeout_option(submit)
    submit.set_defaults(func=cmd_submit)

    status = subparsers.add_parser(
        "status",
        help="a job's status (GET /jobs/{id})",
        epilog=examples("imagegen status 6f1c...   # its status, progress and manifest or error"),
    )
    status.add_argument("job_id")
    _add_api_options(status)
    status.set_defaults(func=cmd_status)

    wait = subparsers.add_parser(
        "wait",
        help="wait for a job (a line per image as it arrives), then download its images",
        epilog=examples("imagegen wait 6f1c... --out out/ --timeout 600"),
    )
    wait.add_argument("job_id")
    wait.add_argument("--out", "-o", default="out", help="output directory")
    _add_api_options(wait)
    add_timeout_option(wait)
    wait.set_defaults(func=cmd_wait)

    models = subparsers.add_parser(
        "models",
        help="the models an API offers (GET /models)",
        epilog=examples("imagegen models", "imagegen models --json"),
    )
    _add_api_options(models)
    models.set_defaults(func=cmd_models)


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        default=None,
        metavar="URL",
        help="API base URL with its stage (default: $IMAGEGEN_API_URL, imagegen configure's, or the local "
        "server http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="API key (better: imagegen configure or $IMAGEGEN_API_KEY, out of your shell history)",
    )
    parser.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="api-key, or iam: sign with your AWS credentials (SigV4) (default: $IMAGEGEN_AUTH, "
        "imagegen configure's, or api-key)",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status calls")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_json_option(parser)


def _region_of(settings: ApiSettings) -> str | None:
    """The Region of an ``execute-api`` URL (``https://ID.execute-api.REGION.amazonaws.com/stage``), else
    the configured one."""
    host = urlparse(settings.api_url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return settings.region


def _client(args: argparse.Namespace) -> ImagegenClient:
    settings = resolve_settings(api_url=args.api, api_key=args.api_key, auth=args.auth)
    if urlparse(settings.api_url).scheme not in {"http", "https"}:
        raise usage_error(f"the API URL {settings.api_url!r} is not http(s)://HOST/STAGE")
    if settings.auth != "iam":
        return ImagegenClient(settings.api_url, api_key=settings.api_key)
    import boto3

    region = _region_of(settings)
    if not region:
        raise usage_error(
            "--auth iam needs the API's Region: an execute-api URL, AWS_REGION or configure --region"
        )
    from botocore.exceptions import BotoCoreError

    try:
        credentials = boto3.Session().get_credentials()
    except BotoCoreError as exc:  # a profile that does not exist, partial keys, an SSO login expired
        raise CliError(
            ExitCode.UNREACHABLE, f"--auth iam: your AWS credentials cannot be used: {exc}"
        ) from None
    if credentials is None:
        raise CliError(
            ExitCode.UNREACHABLE,
            "--auth iam: no AWS credentials found (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)",
        )
    return ImagegenClient(settings.api_url, auth=SigV4(credentials, region))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _progress_printer(quiet: bool) -> Any:
    shown = -1

    def show(job: dict[str, Any]) -> None:
        nonlocal shown
        rank = _STATUS_ORDER.get(job["status"], 0)
        if quiet or rank < shown:  # an earlier status read late (running, then queued): not shown
            return
        shown = rank
        progress = job.get("progress") or {}
        total = progress.get("total")
        if job["status"] in {"queued", "running"} and total:
            finished = (progress.get("done") or 0) + (progress.get("failed") or 0)
            bar = "#" * finished + "." * max(total - finished, 0)
            print(f"{job['job_id']} images [{bar}] {finished}/{total}", file=sys.stderr, flush=True)
        else:
            print(f"{job['job_id']} {job['status']}", file=sys.stderr, flush=True)

    return show


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


def _resume_hint(api: ImagegenClient, job_id: str, out: str) -> str:
    where = "" if api.base_url == resolve_settings().api_url else f" --api {api.base_url}"
    return (
        f"job {job_id} keeps running on the API; resume with: imagegen wait {job_id} --out {out}{where} "
        f"(or stop it: imagegen jobs cancel {job_id}{where})"
    )


def _wait_and_download(api: ImagegenClient, job_id: str, args: argparse.Namespace, out: str) -> int:
    try:
        job = api.follow(
            job_id,
            on_image=_image_printer(job_id, args.quiet),
            on_progress=_progress_printer(args.quiet),
            poll=args.poll,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        raise CliError(ExitCode.INTERRUPTED, f"interrupted: {_resume_hint(api, job_id, out)}") from None
    except TimeoutError:
        raise CliError(
            ExitCode.TIMED_OUT,
            f"not done after --timeout {args.timeout:g} s: {_resume_hint(api, job_id, out)}",
        ) from None
    manifest = job.get("manifest")
    if not manifest:
        error = job.get("error") or {}
        code = ExitCode.INVALID if error.get("error") in _INVALID_ERRORS else ExitCode.FAILED
        raise CliError(code, f"job {job_id} {job['status']}: {error.get('error')}: {error.get('message')}")
    target = Path(out) / local_folder(manifest)
    api.download(manifest, target)
    path = target / "manifest.json"
    local = json.loads(path.read_text())
    print_manifest(local, path, as_json=wants_json(args), offline=False, quiet=args.quiet)
    if job["status"] == "failed" and local.get("succeeded"):
        return int(ExitCode.PARTIAL)
    return int(exit_code_of(local))


def cmd_submit(args: argparse.Namespace) -> int:
    if args.out is not None and not args.wait:
        raise usage_error(
            "--out is where --wait writes the images: add --wait, or later run imagegen wait ID --out DIR"
        )
    request = request_from_args(args)
    out = args.out or "out"
    if args.wait:
        check_out_dir(out)
    if args.webhook:
        request["webhook"] = args.webhook
    if args.webhook_event:
        request["webhook_events"] = args.webhook_event
    with _client(args) as api:
        job = api.submit(request)
        if not args.wait:
            if wants_json(args):
                _print_json(job)
            else:
                print(f"job {job['job_id']} {job['status']}; follow it: imagegen wait {job['job_id']}")
            return EXIT_OK
        if not args.quiet:
            print(f"job {job['job_id']} submitted", file=sys.stderr, flush=True)
        return _wait_and_download(api, job["job_id"], args, out)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as api:
        job = api.status(args.job_id)
    if wants_json(args):
        _print_json(job)
        return EXIT_OK
    progress = job.get("progress") or {}
    line = f"job {job['job_id']} {job['status']}"
    if progress.get("total"):
        line += f": {progress.get('done') or 0} of {progress['total']} images made, {progress.get('failed') or 0} failed"
    print(line)
    if job.get("error"):
        print(f"{job['error'].get('error')}: {job['error'].get('message')}")
    manifest = job.get("manifest")
    if manifest:
        print(
            f"{manifest.get('succeeded')} of {manifest.get('requested')} images made "
            f"({manifest.get('filtered')} filtered, {manifest.get('failed')} failed); "
            f"download them: imagegen wait {job['job_id']} --out out/"
        )
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    with _client(args) as api:
        return _wait_and_download(api, args.job_id, args, args.out)


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as api:
        answer = api.models()
    if wants_json(args):
        _print_json(answer)
        return EXIT_OK
    rows = [
        {
            "id": m.get("id"),
            "default": "yes" if m.get("id") == answer.get("default_model") else "",
            "available": {True: "yes", False: "no"}.get(m.get("available")),
            "lifecycle": m.get("lifecycle"),
            "usd": (m.get("price") or {}).get("usd_per_image"),
            "name": m.get("name"),
        }
        for m in answer.get("models", [])
    ]
    columns = [
        ("id", "ID"),
        ("default", "DEFAULT"),
        ("available", "AVAILABLE"),
        ("lifecycle", "LIFECYCLE"),
        ("usd", "USD/IMAGE"),
        ("name", "NAME"),
    ]
    print(format_table(rows, columns))
    return EXIT_OK


def _port_problem(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on ``host:port`` (checked before the engine starts), or None."""
    if not 0 <= port <= 65535:
        return f"--port {port}: give a port from 1 to 65535 (0: any free one)"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"--host {host}: not an address of this machine ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"--port {port}: already in use on {host}; stop what uses it or give another --port"
            return f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})"
    return None


def parse_daily_spend(values: list[str], keys: Mapping[str, str]) -> tuple[float | None, dict[str, float]]:
    """``--daily-spend-usd`` values: ``USD`` (every caller's ceiling) and ``NAME=USD`` (the ceiling of the
    ``--api-key`` named NAME). ValueError naming the value when it is not a positive number, names no
    key of the server, or is given twice."""
    default: float | None = None
    per_key: dict[str, float] = {}
    for value in values:
        name, sep, amount = value.rpartition("=")
        try:
            usd = float(amount)
        except ValueError:
            usd = float("nan")
        if not (0 < usd < float("inf")):
            raise ValueError(f"--daily-spend-usd {value!r}: give a positive number of USD, or NAME=USD")
        if not sep:
            if default is not None:
                raise ValueError("--daily-spend-usd USD is given twice; give one for every caller")
            default = usd
        elif name not in keys:
            raise ValueError(f"--daily-spend-usd {value!r}: {name!r} is not a --api-key NAME of this server")
        elif name in per_key:
            raise ValueError(f"--daily-spend-usd gives {name!r} two ceilings")
        else:
            per_key[name] = usd
    return default, per_key


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from imagegen.runtime.engine import EngineConfig, OfflineEngine
    from imagegen.runtime.local_api import create_app
    from imagegen.runtime.local_auth import parse_api_keys
    from imagegen.runtime.local_webhooks import LocalWebhooks, secret_problem

    try:
        keys = parse_api_keys(args.api_key)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if not 1 <= args.link_lifetime_days <= 3650:
        raise usage_error("--link-lifetime-days takes 1 to 3650 days")
    if args.web_dir and not (Path(args.web_dir) / "index.html").is_file():
        raise usage_error(f"--web-dir {args.web_dir}: no index.html there (the repository's page is in web/)")
    port_problem = _port_problem(args.host, args.port)
    if port_problem:
        raise usage_error(port_problem)
    try:
        spend_default, spend_per_key = parse_daily_spend(args.daily_spend_usd, keys)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    config = EngineConfig(
        daily_spend_limit_usd=spend_default,
        link_lifetime_seconds=args.link_lifetime_days * 24 * 3600,
    )
    if args.latency:
        config.faults.latency_seconds = args.latency
    quota_error = apply_quota_options(config, args)
    if quota_error:
        raise usage_error(quota_error)
    secret_error = secret_problem(args.webhook_secret) if args.webhook_secret else None
    if secret_error:
        raise usage_error(f"--webhook-secret is {secret_error}")
    with OfflineEngine(config) as engine, contextlib.ExitStack() as extras:
        # the lasting links of the stored manifests and the webhooks lead here
        host = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
        engine.set_links_base_url(f"http://{host}:{args.port}/")
        if args.webhook_secret:
            extras.enter_context(LocalWebhooks(engine, secret=args.webhook_secret))
        ledger = engine.spend_ledger
        for name, usd in spend_per_key.items():  # a key's own ceiling, as imagegen keys create writes it
            if ledger is not None:
                ledger.set_limit(Caller("apiKey", name).namespace, usd)
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
            + (f"  callers: {', '.join(keys)} (x-api-key)" if keys else "  open: no API key")
            + (f"  daily spend limit: ${spend_default:g} per caller" if spend_default else "")
            + "".join(f"  {name}: ${usd:g} a day" for name, usd in spend_per_key.items())
            + "  (Ctrl-C stops it)",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK

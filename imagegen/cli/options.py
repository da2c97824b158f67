"""What every command that sends a request shares: its options, the request they build, the checks of
the files it names, and how it prints (JSON or words)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from imagegen.cli.exit_codes import CliError, ExitCode, usage_error

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INVALID = (
    ExitCode.OK,
    ExitCode.FAILED,
    ExitCode.USAGE,
    ExitCode.INVALID,
)
EXIT_PARTIAL, EXIT_UNREACHABLE = ExitCode.PARTIAL, ExitCode.UNREACHABLE
EXIT_TIMED_OUT, EXIT_INTERRUPTED = ExitCode.TIMED_OUT, ExitCode.INTERRUPTED

#: How long a command waits for a job by default (``--timeout``), seconds.
DEFAULT_TIMEOUT_SECONDS = 900.0


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped, epilogs (examples, exit codes: :func:`examples`) as written; each option's
    default in its help when it has one (argparse's ArgumentDefaultsHelpFormatter, less
    ``(default: None)``)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(_VERBATIM):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "%(default)" in text or "default" in text:
            return action.help
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


_VERBATIM = ("examples:", "exit codes:")


def examples(*lines: str) -> str:
    """An epilog of example command lines (printed as written)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def wants_json(args: argparse.Namespace) -> bool:
    """JSON on stdout with ``--json`` or when stdout is not a terminal (a pipe, a file); words otherwise."""
    return bool(getattr(args, "json", False)) or not sys.stdout.isatty()


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON on stdout (the default when stdout is not a terminal)"
    )


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="stop waiting after this long (exit code 6; a job on an API keeps running)",
    )


def read_request_file(name: str) -> dict[str, Any]:
    """The JSON object in file ``name``: a usage error when it cannot be read, an invalid request when
    it is not a JSON object."""
    path = Path(name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise usage_error(f"--request-file {name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise usage_error(f"--request-file {name}: cannot read it ({exc})") from None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise CliError(
            ExitCode.INVALID, f"--request-file {name} is not JSON ({exc}); give one JSON object"
        ) from None
    if not isinstance(loaded, dict):
        raise CliError(
            ExitCode.INVALID,
            f"--request-file {name}: the request must be a JSON object, not {type(loaded).__name__}",
        )
    return loaded


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request (the same contract as the API, console and events) from CLI options."""
    request: dict[str, Any] = {}
    if args.request_file:
        request.update(read_request_file(args.request_file))
    elif args.prompt is None:
        raise usage_error('give a prompt (imagegen generate "a red porsche") or --request-file FILE')
    if args.prompt is not None:
        request["prompt"] = args.prompt
    options = {
        "negative_prompt": args.negative_prompt,
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
        "file_name_prefix": args.file_name_prefix,
        "idempotency_key": getattr(args, "idempotency_key", None),
    }
    request.update({k: v for k, v in options.items() if v is not None})
    return request


def add_request_options(parser: argparse.ArgumentParser, *, idempotency: bool = False) -> None:
    """Options that build a request, named like its fields; shared by the commands that send one.
    ``--negative`` and ``--prefix`` (their names before) still work, unlisted."""
    parser.add_argument("prompt", nargs="?", help="what to draw (or give --request-file)")
    parser.add_argument(
        "--request-file", metavar="FILE", help="a JSON request, as sent to the API or the console"
    )
    parser.add_argument("--count", "-n", type=int, help="number of images, 1-40 (the request's default: 4)")
    parser.add_argument("--model", "-m", help="registry id or Bedrock model id, e.g. stable-image-ultra")
    parser.add_argument("--negative-prompt", help="what the image should not show")
    parser.add_argument("--negative", dest="negative_prompt", help=argparse.SUPPRESS)
    parser.add_argument(
        "--seed", type=int, help="seed of the first image; image i gets seed+i (random when absent)"
    )
    parser.add_argument("--width", type=int, help="width in pixels (models with sizes)")
    parser.add_argument("--height", type=int, help="height in pixels (models with sizes)")
    parser.add_argument("--aspect-ratio", help="e.g. 16:9 (Stability models)")
    parser.add_argument("--quality", choices=["standard", "premium"], help="Nova Canvas / Titan quality")
    parser.add_argument("--cfg-scale", type=float, help="how closely the image follows the prompt")
    parser.add_argument("--style", help="Nova Canvas style preset")
    parser.add_argument("--output-folder", help="folder of the images, e.g. 000/111")
    parser.add_argument("--file-name-prefix", help="start of each image's file name")
    parser.add_argument("--prefix", dest="file_name_prefix", help=argparse.SUPPRESS)
    if idempotency:
        parser.add_argument(
            "--idempotency-key", help="the same key again answers the same job instead of starting one"
        )


def check_out_dir(name: str) -> Path:
    """``--out``: a directory, or one that can be made, this user can write to; a usage error
    otherwise, before any work starts (it is made when there is something to write)."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise usage_error(
            f"--out {name} is a file, not a directory: name a directory (it is made if missing)"
        )
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise usage_error(f"--out {name}: {existing} is a file, so the directory cannot be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise usage_error(f"--out {name}: this user cannot write in {existing}; name another directory")
    return path


def add_quota_options(parser: argparse.ArgumentParser) -> None:
    """``--quota MODEL=N`` (the stand-in answers at most N calls of MODEL at once, the rest
    ThrottlingException, as Bedrock does; admission control is told the same N) and ``--no-admission``."""
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="at most N calls of MODEL in flight at the Bedrock stand-in (admission control uses N too)",
    )
    parser.add_argument(
        "--no-admission",
        action="store_true",
        help="turn admission control off: every branch calls its model at once",
    )


def apply_quota_options(config: Any, args: argparse.Namespace) -> str | None:
    """Put ``--quota`` and ``--no-admission`` into an ``EngineConfig``; the error to print, if any."""
    from image_pipeline.core.admission import InvalidQuota, check_quota
    from image_pipeline.models.ids import BEDROCK_MODEL_IDS

    quotas: dict[str, int] = {}
    for given in args.quota:
        model, sep, value = given.partition("=")
        model = model.strip()
        if not sep or not model:
            return f"--quota {given!r}: give MODEL=N, such as stable-image-core=4"
        if model not in BEDROCK_MODEL_IDS:
            return f"--quota {model}: unknown model; the registry has {', '.join(BEDROCK_MODEL_IDS)}"
        try:
            quotas[model] = check_quota(value, what=f"--quota {model}")
        except InvalidQuota as exc:
            return str(exc)
    config.bedrock_quotas = quotas
    config.model_concurrency = dict(quotas)
    config.admission = not args.no_admission
    return None

"""What every command that sends a request shares: its options, the request they build, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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

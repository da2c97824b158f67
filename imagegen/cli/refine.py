"""``imagegen refine``: upscale, vary or edit an image ``generate`` wrote, offline, writing the new
images and ``manifest.json`` under ``--out`` as ``generate`` does.

The source is a file under ``--out`` (or anywhere: an image listed in a ``manifest.json`` beside it
keeps its key, so the new manifest's lineage names the image it came from) or the key of an image a
manifest under ``--out`` lists. An offline run starts with an empty bucket, so the command puts the
source (and a ``--mask-image`` or ``--style-image``, which may be any PNG file) into it first, under
the offline caller's namespace, then runs the same request the API takes (``source_image``,
``operation`` and the operation's fields: docs/api.md, "Refining a stored image"). Everything is checked
before the engine starts, as ``generate`` does, and again by the workflow's first step, which also
checks the images themselves.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

from imagegen.cli.exit_codes import CliError, ExitCode, usage_error
from imagegen.cli.generate import check_first, dry_run, print_progress, save_result
from imagegen.cli.options import (
    add_json_option,
    add_timeout_option,
    check_out_dir,
    examples,
    wants_json,
)
from imagegen.cli.outputs import exit_code_of, print_manifest
from imagegen.runtime.engine import EngineConfig, OfflineEngine

OPERATIONS = (
    "variation",
    "upscale",
    "remove-background",
    "search-and-replace",
    "inpaint",
    "outpaint",
    "style-transfer",
)
#: Option -> request field, for the options that are passed through as they are.
_FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "count": "count",
    "model": "model",
    "seed": "seed",
    "style": "style",
    "upscale_mode": "upscale_mode",
    "strength": "strength",
    "search_prompt": "search_prompt",
    "mask_prompt": "mask_prompt",
    "left": "left",
    "right": "right",
    "up": "up",
    "down": "down",
    "creativity": "creativity",
    "grow_mask": "grow_mask",
    "style_strength": "style_strength",
    "composition_fidelity": "composition_fidelity",
    "change_strength": "change_strength",
    "output_folder": "output_folder",
    "file_name_prefix": "file_name_prefix",
}


def _manifests(out_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(out_dir.rglob("manifest.json")) if out_dir.is_dir() else []:
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict):
            found.append((path, loaded))
    return found


def _listed_key(path: Path) -> str | None:
    """The key a ``manifest.json`` beside ``path`` gives the file (None when none lists it)."""
    beside = path.parent / "manifest.json"
    try:
        manifest = json.loads(beside.read_text())
    except (OSError, ValueError):
        return None
    for image in manifest.get("images") or []:
        if image.get("key") and image.get("file") and Path(image["file"]).resolve() == path.resolve():
            return str(image["key"])
    return None


def resolve_image(given: str, out_dir: Path, option: str) -> tuple[bytes, str | None]:
    """The bytes of the image ``given`` names (a file, or a key some manifest under ``out_dir`` lists)
    and its key when a manifest gives it one. A usage error when neither."""
    path = Path(given)
    if path.is_file():
        return path.read_bytes(), _listed_key(path)
    for _, manifest in _manifests(out_dir):
        for image in manifest.get("images") or []:
            if image.get("key") == given and image.get("file") and Path(image["file"]).is_file():
                return Path(image["file"]).read_bytes(), given
    raise usage_error(
        f"{option} {given}: no such file, and no manifest.json under {out_dir}/ lists an image with that "
        "key (give a file imagegen generate wrote, or its key)"
    )


def _offline_key(namespace: str, key: str | None, given: str, run: str) -> str:
    """Where the image goes in the offline bucket: its own key under this run's namespace (the offline
    caller's), or ``uploads/<run>/<file name>`` for a file no manifest lists."""
    if key is not None and "/" in key:
        return f"{namespace}/{key.split('/', 1)[1]}"
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(given).stem)[:64] or "image"
    return f"{namespace}/uploads/{run}/{name}.png"


def request_of(args: argparse.Namespace, keys: dict[str, str]) -> dict[str, Any]:
    """The API's request for these options and the offline keys of the stored images."""
    request: dict[str, Any] = {"operation": args.operation, **keys}
    for option, field in _FIELDS.items():
        value = getattr(args, option, None)
        if value is not None:
            request[field] = value
    return request


def cmd_refine(args: argparse.Namespace) -> int:
    from image_pipeline.core.tenancy import console_caller

    out_dir = check_out_dir(args.out)
    run = str(uuid.uuid4())
    namespace = console_caller().namespace  # the offline engine's runs are the console's
    images: dict[str, tuple[bytes, str]] = {}
    for field, given in (
        ("source_image", args.source),
        ("mask_image", args.mask_image),
        ("style_image", args.style_image),
    ):
        if given is None:
            continue
        data, key = resolve_image(
            given, out_dir, "SOURCE" if field == "source_image" else f"--{field.replace('_', '-')}"
        )
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise CliError(ExitCode.INVALID, f"{given}: not a PNG image (the deployment stores PNG images)")
        images[field] = (data, _offline_key(namespace, key, given, run))
    request = request_of(args, {field: key for field, (_, key) in images.items()})
    config = EngineConfig(log_level="DEBUG" if args.verbose else "WARNING")
    checked = check_first(request, config)
    if args.dry_run:
        return dry_run(checked, args)
    with OfflineEngine(config) as engine:
        for data, key in images.values():
            engine.s3.put_object(Bucket=engine.config.bucket, Key=key, Body=data, ContentType="image/png")
        arn = engine.start_execution(request, name=run, kind="jobs")
        try:
            result = engine.wait(
                arn, timeout=args.timeout, on_progress=None if args.quiet else print_progress
            )
        except TimeoutError:
            raise CliError(ExitCode.TIMED_OUT, f"not done after --timeout {args.timeout:g} s") from None
        manifest_path = save_result(engine, result, out_dir)
    local = json.loads(manifest_path.read_text())
    print_manifest(local, manifest_path, as_json=wants_json(args), offline=True, quiet=args.quiet)
    return int(exit_code_of(local))


def add_commands(subparsers: Any) -> None:
    refine = subparsers.add_parser(
        "refine",
        help="upscale, vary or edit an image generate wrote (offline): new images and manifest.json",
        description="Runs an operation on a stored image through the workflow offline (the same request "
        "the API takes: source_image, operation and its fields). SOURCE is a file under --out (its "
        "manifest.json gives its key, kept in the new images' lineage) or the key of an image a manifest "
        "under --out lists. The stand-in does each operation on the real pixels (an upscale is a resize, "
        "a background removal has an alpha channel, ...); it is not a model.",
        epilog=examples(
            "imagegen refine out/images/<id>/image-00-42.png --operation upscale",
            "imagegen refine out/images/<id>/image-00-42.png --operation variation -n 4 --strength 0.5",
            'imagegen refine <key> --operation search-and-replace --search-prompt "the car" --prompt "a horse"',
            "imagegen refine out/images/<id>/image-00-42.png --operation outpaint --left 256 --right 256",
            'imagegen refine out/images/<id>/image-00-42.png --operation inpaint --mask-image mask.png -p "sky"',
        ),
    )
    refine.add_argument("source", metavar="SOURCE", help="a file imagegen generate wrote, or its key")
    refine.add_argument("--operation", "-O", required=True, choices=OPERATIONS, help="what to do with it")
    refine.add_argument("--prompt", "-p", help="what to draw (search-and-replace and inpaint need one)")
    refine.add_argument("--negative-prompt", help="what the image should not show")
    refine.add_argument("--count", "-n", type=int, help="images to make (upscale, remove-background: 1)")
    refine.add_argument("--model", "-m", help="a model that does the operation (default: the operation's)")
    refine.add_argument("--seed", type=int, help="seed of the first image; image i gets seed+i")
    refine.add_argument(
        "--style", help="style preset (creative upscale, search-and-replace, inpaint, outpaint)"
    )
    refine.add_argument("--upscale-mode", choices=["fast", "conservative", "creative"], help="upscale (fast)")
    refine.add_argument("--strength", type=float, help="variation: 0 keeps the source, 1 ignores it")
    refine.add_argument("--search-prompt", help="search-and-replace: what to replace")
    refine.add_argument("--mask-image", metavar="FILE|KEY", help="inpaint: a black-and-white PNG mask")
    refine.add_argument("--mask-prompt", help="inpaint: what to repaint (instead of --mask-image)")
    for side in ("left", "right", "up", "down"):
        refine.add_argument(f"--{side}", type=int, help=f"outpaint: pixels to add ({side})")
    refine.add_argument("--style-image", metavar="FILE|KEY", help="style-transfer: the style's image")
    refine.add_argument("--creativity", type=float, help="upscale conservative/creative, outpaint")
    refine.add_argument("--grow-mask", type=int, help="inpaint, search-and-replace: pixels to grow the mask")
    refine.add_argument("--style-strength", type=float, help="style-transfer")
    refine.add_argument("--composition-fidelity", type=float, help="style-transfer")
    refine.add_argument("--change-strength", type=float, help="style-transfer")
    refine.add_argument("--output-folder", help="folder of the new images, e.g. 000/111")
    refine.add_argument("--file-name-prefix", help="start of each new image's file name")
    refine.add_argument("--out", "-o", default="out", help="where SOURCE's manifests are and the images go")
    refine.add_argument("--dry-run", action="store_true", help="check the request and print its plan")
    add_json_option(refine)
    add_timeout_option(refine)
    refine.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    refine.add_argument("--verbose", "-v", action="store_true", help="handler logs at DEBUG level")
    refine.set_defaults(func=cmd_refine)

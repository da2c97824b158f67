"""What the CLI and the API client write to disk beside the images they fetched."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from imagegen.cli.exit_codes import ExitCode


def local_folder(manifest: dict[str, Any]) -> str:
    """Where a request's files go under ``--out``: its S3 prefix without the caller's namespace
    (``<namespace>/images/<id>/`` -> ``images/<id>/``): on one's own disk, everything is one's own."""
    prefix = str(manifest["prefix"])
    namespace = manifest.get("caller_namespace")
    return prefix.removeprefix(f"{namespace}/") if namespace else prefix


def write_local_manifest(manifest: dict[str, Any], files: dict[str, Path], out_dir: Path) -> Path:
    """Write ``out_dir/manifest.json``: a copy of ``manifest`` with its URLs dropped (they expire)
    and each image stored at ``files[key]`` given that path as ``file``; the lasting ``link`` and
    ``download_link`` (and ``links_expire_at``) are kept: they work for as long as the deployment
    keeps the images. Returns its path."""
    local = json.loads(json.dumps(manifest))
    local.pop("urls_expire_at", None)
    for image in local.get("images", []):
        image.pop("url", None)
        image.pop("download_url", None)
        if image.get("key") in files:
            image["file"] = str(files[image["key"]])
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(local, indent=2) + "\n")
    return path


def exit_code_of(manifest: dict[str, Any]) -> ExitCode:
    """A manifest's exit code: every image made 0, some 4 (partly failed), none 1."""
    succeeded, requested = int(manifest.get("succeeded") or 0), int(manifest.get("requested") or 0)
    if requested and succeeded == requested:
        return ExitCode.OK
    return ExitCode.PARTIAL if succeeded else ExitCode.FAILED


#: Said under an offline run's summary: what its pictures are (README, "What the offline images are").
OFFLINE_NOTE = (
    "offline: these are placeholder pictures drawn from a hash of the prompt and seed, not a model's "
    "images; deployed, Bedrock makes them"
)


def summary_lines(manifest: dict[str, Any], manifest_path: Path, *, offline: bool) -> list[str]:
    """What a person reads on a terminal: what was written where, what failed and why."""
    folder = manifest_path.parent
    images = manifest.get("images") or []
    made = [i for i in images if i.get("file")]
    model = manifest.get("model")
    model_id = model.get("id") if isinstance(model, dict) else model
    lines = [
        f"{len(made)} of {manifest.get('requested', len(images))} images written to {folder}/"
        f" ({model_id}, request {manifest.get('request_id')})"
    ]
    lines += [f"  {Path(i['file']).name}  seed {i.get('seed')}" for i in made]
    for image in images:
        if image.get("status") != "SUCCEEDED":
            why = image.get("message") or ""
            lines.append(
                f"  image #{image.get('index')} (seed {image.get('seed')}) {image.get('status', '').lower()}: "
                f"{image.get('reason_code')}" + (f" - {why}" if why else "")
            )
    if manifest.get("cancelled"):
        lines.append("the job was cancelled; the images made before are kept")
    for warning in manifest.get("warnings") or []:
        lines.append(f"warning: {warning}")
    lines.append(f"manifest (each image's seed, size, cost, reason): {manifest_path}")
    if offline and made:
        lines.append(OFFLINE_NOTE)
    return lines


def print_manifest(
    manifest: dict[str, Any], manifest_path: Path, *, as_json: bool, offline: bool, quiet: bool = False
) -> None:
    """The local manifest as JSON on stdout (and, unless ``quiet``, one line on stderr saying where the
    files are), or its summary in words."""
    if not as_json:
        print("\n".join(summary_lines(manifest, manifest_path, offline=offline)))
        return
    print(json.dumps(manifest, indent=2))
    if not quiet:
        print(
            f"{summary_lines(manifest, manifest_path, offline=offline)[0]}; manifest: {manifest_path}",
            file=sys.stderr,
        )


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """``rows`` as a plain text table of ``columns`` (key, heading); a missing value is blank."""
    cells = [[heading for _, heading in columns]]
    cells += [["" if row.get(key) is None else str(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )

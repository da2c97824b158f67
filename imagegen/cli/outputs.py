"""What the CLI and the API client write to disk beside the images they fetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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

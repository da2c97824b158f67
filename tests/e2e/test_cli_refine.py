"""``imagegen refine`` as a user runs it (issue 16, item 4): pick an image ``generate`` wrote, then vary,
upscale or edit it offline; the new images and manifest.json land under --out like generate's, each
image's lineage naming the image it came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageChops


def imagegen(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegen", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_refine_varies_and_edits_an_image_generate_wrote(tmp_path: Path) -> None:
    made = imagegen(
        "generate",
        "a red porsche",
        "-n",
        "1",
        "--seed",
        "7",
        "--model",
        "sd3-5-large",
        "--out",
        str(tmp_path),
    )
    assert made.returncode == 0, made.stderr
    (source,) = json.loads(made.stdout)["images"]
    source_file = tmp_path / "images" / json.loads(made.stdout)["request_id"] / Path(source["key"]).name
    assert source_file.is_file()

    varied = imagegen(
        "refine",
        str(source_file),
        "--operation",
        "variation",
        "-n",
        "2",
        "--strength",
        "0.5",
        "--out",
        str(tmp_path),
    )
    assert varied.returncode == 0, varied.stderr
    manifest = json.loads(varied.stdout)
    assert manifest["succeeded"] == 2 and manifest["model"]["id"] == "sd3-5-large"
    original = Image.open(source_file).convert("RGB")
    for image in manifest["images"]:
        assert image["lineage"]["source_image"] == source["key"]  # the key generate's manifest gave it
        assert image["lineage"]["operation"] == "variation"
        new = Image.open(image["file"]).convert("RGB")
        assert new.size == original.size and ImageChops.difference(new, original).getbbox() is not None

    # By key: the manifest under --out that lists it gives its file.
    cut_out = imagegen("refine", source["key"], "--operation", "remove-background", "--out", str(tmp_path))
    assert cut_out.returncode == 0, cut_out.stderr
    (image,) = json.loads(cut_out.stdout)["images"]
    assert Image.open(image["file"]).mode == "RGBA" and image["lineage"]["source_image"] == source["key"]


def test_refine_upscales_any_png_and_refuses_bad_options(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.new("RGB", (128, 80), (10, 200, 90)).save(small)
    done = imagegen("refine", str(small), "--operation", "upscale", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    (image,) = manifest["images"]
    assert Image.open(image["file"]).size == (512, 320) and image["cost_usd"] == 0.03
    assert image["lineage"]["source_image"].endswith("/small.png")
    assert (Path(image["file"]).parent / "manifest.json").is_file()

    bad = imagegen(
        "refine", str(small), "--operation", "upscale", "--strength", "0.5", "--out", str(tmp_path / "bad")
    )
    assert bad.returncode == 3 and "strength: goes with operation variation" in bad.stderr
    missing = imagegen(
        "refine", "0123456789ab/images/x/none.png", "--operation", "upscale", "--out", str(tmp_path)
    )
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.png"))

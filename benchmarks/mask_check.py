"""The inpaint mask check's CPU cost per pixel (``image_pipeline.core.png_pixels.is_black_and_white``).

The check decodes a PNG in pure Python (the Lambda asset has no Pillow). Its cost depends on the colour
type (bytes per pixel) and on the filter of each row: None and Up are a few C-level operations per row,
Sub is ``itertools.accumulate``, Average and Paeth are a Python loop per byte. A PNG's writer picks the
filters, so a request can choose the slowest: every row Paeth. This writes, for each colour type and
each filter, a noisy black-and-white mask whose every row uses that filter (encoded here, exactly), and
measures the check's CPU time (``time.process_time``, best of ``REPEATS``) per pixel. The largest figure
is what ``image_pipeline.core.time_budget.MASK_CHECK_CORE_SECONDS_PER_PIXEL`` must cover
(tests/infra/test_time_budget.py reads ``results/mask_check.json``).

    python benchmarks/mask_check.py           # about a minute; writes benchmarks/results/mask_check.json
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from image_pipeline.core.png_pixels import PNG_SIGNATURE, is_black_and_white

SIDE = 768  # 589,824 pixels: the cost is linear in the pixels (one pass over the rows)
REPEATS = 3
#: colour type -> (name, samples per pixel)
COLOUR_TYPES = {0: ("grey", 1), 2: ("RGB", 3), 4: ("grey+alpha", 2), 6: ("RGBA", 4)}
FILTERS = {0: "None", 1: "Sub", 2: "Up", 3: "Average", 4: "Paeth"}
RESULT = Path(__file__).parent / "results" / "mask_check.json"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter(kind: int, row: bytes, prev: bytes, bpp: int) -> bytes:
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        predictor = (0, a, b, (a + b) >> 1, _paeth(a, b, c))[kind]
        out[i] = (x - predictor) & 0xFF
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def noisy_mask(colour: int, bpp: int, kind: int, side: int, seed: int = 7) -> bytes:
    """A side x side PNG of random black or white pixels (alpha 255), every row filtered with ``kind``."""
    rng = random.Random(seed)
    colour_samples = 1 if colour in (0, 4) else 3
    prev, raw = bytes(side * bpp), bytearray()
    for _ in range(side):
        row = bytearray()
        for _ in range(side):
            v = rng.choice((0, 255))
            row += bytes([v] * colour_samples) + (b"\xff" if bpp > colour_samples else b"")
        raw.append(kind)
        raw += _filter(kind, bytes(row), prev, bpp)
        prev = bytes(row)
    header = struct.pack(">IIBBBBB", side, side, 8, colour, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _chunk(b"IEND", b"")
    )


def measure(data: bytes) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time()
        assert is_black_and_white(data)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    cases = []
    for colour, (name, bpp) in COLOUR_TYPES.items():
        for kind, filter_name in FILTERS.items():
            seconds = measure(noisy_mask(colour, bpp, kind, SIDE))
            per_pixel = seconds / SIDE**2
            cases.append(
                {
                    "colour_type": name,
                    "filter": filter_name,
                    "cpu_seconds": round(seconds, 4),
                    "cpu_seconds_per_pixel": per_pixel,
                }
            )
            print(f"{name:10} {filter_name:8} {seconds:7.3f} s  {per_pixel * 1e6:.3f} us/pixel", flush=True)
    worst = max(cases, key=lambda c: c["cpu_seconds_per_pixel"])
    result = {
        "what": "is_black_and_white CPU time (process_time, best of 3) on noisy black-and-white masks, "
        "every row one filter",
        "side": SIDE,
        "pixels": SIDE**2,
        "python": sys.version.split()[0],
        "load_average": os.getloadavg(),
        "cases": cases,
        "worst": worst,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"worst: {worst['colour_type']} {worst['filter']}: {worst['cpu_seconds_per_pixel'] * 1e6:.3f} us/pixel"
    )


if __name__ == "__main__":
    main()

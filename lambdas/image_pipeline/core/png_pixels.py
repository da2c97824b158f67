"""Read a PNG's size and pixels with the standard library (zlib), for the checks of stored images.

The Lambda asset carries no Pillow (it is the ``lambdas/`` directory as it is, with pydantic and
Powertools from the Powertools layer), and the checks need little: the size (the IHDR chunk) of a
source image, and whether a mask is black and white (every colour sample 0 or 255). Decoding follows
the PNG specification (https://www.w3.org/TR/png-3/: chunks, IHDR, the five filter types of filter
method 0); non-interlaced images of 8 bits per sample (grey, grey+alpha, RGB, RGBA, palette) and 1-bit
grey are read, which is every PNG this deployment writes and what image editors save by default.
"""

from __future__ import annotations

import struct
import zlib
from itertools import accumulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: The colour samples of a pixel (the rest is alpha), by colour type.
_COLOUR_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 1, 6: 3}
_BLACK_AND_WHITE = b"\x00\xff"


class NotAPng(ValueError):
    """The data is not a PNG this module reads; the message says why."""


def png_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (the first 24 bytes); None when not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chunks(data: bytes) -> tuple[bytes, bytes, bytes]:
    """IHDR's data, the concatenated IDAT data and PLTE's data (empty when absent)."""
    at, header, idat, palette = 8, b"", bytearray(), b""
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.extend(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    return header, bytes(idat), palette


def _add_byte(a: int, b: int) -> int:
    return (a + b) & 0xFF


def _unfilter(kind: int, raw: bytes, prev: bytes, bpp: int) -> bytes:
    """One scanline's bytes from its filtered bytes (filter method 0: None, Sub, Up, Average, Paeth)."""
    if kind == 0:
        return raw
    if kind == 2:
        return bytes((x + y) & 0xFF for x, y in zip(raw, prev, strict=True))
    if kind == 1:  # each channel is a running sum of its own bytes
        row = bytearray(len(raw))
        for c in range(bpp):
            sums: list[int] = list(accumulate(raw[c::bpp], _add_byte))
            row[c::bpp] = bytes(sums)
        return bytes(row)
    row = bytearray(raw)
    n = len(row)
    if kind == 3:
        for i in range(n):
            row[i] = (row[i] + (((row[i - bpp] if i >= bpp else 0) + prev[i]) >> 1)) & 0xFF
        return bytes(row)
    if kind != 4:
        raise NotAPng(f"unknown filter type {kind}")
    for i in range(n):  # Paeth, inlined: the hot loop of a mask check
        b = prev[i]
        if i >= bpp:
            a, c = row[i - bpp], prev[i - bpp]
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else:
            predictor = b  # a = c = 0: the Paeth predictor is b
        row[i] = (row[i] + predictor) & 0xFF
    return bytes(row)


def is_black_and_white(data: bytes) -> bool:
    """Whether every pixel of the PNG is black or white (each colour sample 0 or 255; alpha ignored).

    Raises :class:`NotAPng` for data this module does not read (not a PNG, interlaced, 16 bits).
    """
    if png_dimensions(data) is None:
        raise NotAPng("not a PNG image")
    header, idat, palette = _chunks(data)
    if len(header) != 13:
        raise NotAPng("a PNG without a valid IHDR chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if interlace:
        raise NotAPng("an interlaced PNG (save it without interlacing)")
    if colour == 0 and depth == 1:
        return True  # one bit per pixel: black or white by construction
    if depth != 8 or colour not in _SAMPLES:
        raise NotAPng(f"a PNG of {depth} bits per sample, colour type {colour} (use 8-bit grey or RGB)")
    try:
        pixels = zlib.decompress(idat)
    except zlib.error as exc:
        raise NotAPng(f"a PNG whose image data does not decompress: {exc}") from None
    bpp = _SAMPLES[colour]
    stride = width * bpp
    if len(pixels) < height * (stride + 1):
        raise NotAPng("a PNG whose image data is shorter than its size says")
    if colour == 3:
        entries = [palette[i : i + 3] for i in range(0, len(palette), 3)]
        allowed = {i for i, rgb in enumerate(entries) if not rgb.translate(None, _BLACK_AND_WHITE)}
    colour_samples = _COLOUR_SAMPLES[colour]
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(pixels[start], pixels[start + 1 : start + 1 + stride], prev, bpp)
        prev = row
        if colour == 3:
            if not set(row) <= allowed:
                return False
            continue
        samples = row if colour_samples == bpp else b"".join(row[c::bpp] for c in range(colour_samples))
        if samples.translate(None, _BLACK_AND_WHITE):
            return False
    return True

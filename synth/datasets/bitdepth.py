"""How many of a 16-bit file's bits are data: 12-bit camera frames are stored in 16-bit PNG/TIFF files.

Scaling such a frame by 255/65535 makes it nearly black, so the data's depth decides the scale: the PNG
`sBIT` chunk (significant bits, PNG spec 11.3.3.4) where files carry it, otherwise the largest value over
the category's images rounded up to 8/10/12/14/16 bits. One depth per category, so every image of it gets
the same scale.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEPS = (8, 10, 12, 14, 16)
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngHeader:
    """IHDR bit depth and colour type, the sBIT bytes (one per channel) and the tRNS chunk when present."""

    bit_depth: int
    colour_type: int
    sbit: tuple[int, ...] | None
    trns: bytes | None = None


def png_header(path: Path) -> PngHeader | None:
    """The PNG header of `path` (chunks up to the first IDAT), or None for a non-PNG or unreadable file."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != _PNG:
                return None
            depth, colour, sbit, trns = 0, 0, None, None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    break
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IDAT" or length > 1 << 20:
                    break
                body = fh.read(length)
                fh.seek(4, 1)                       # CRC
                if kind == b"IHDR" and length >= 10:
                    depth, colour = body[8], body[9]
                elif kind == b"sBIT":
                    sbit = tuple(body)
                elif kind == b"tRNS":
                    trns = body
    except OSError:
        return None
    return PngHeader(depth, colour, sbit, trns) if depth else None


def significant_bits(path: Path) -> tuple[int | None, int | None]:
    """(colour bits, alpha bits) from a PNG's sBIT chunk; (None, None) without one."""
    return _sbit_bits(png_header(path))


def _sbit_bits(head: PngHeader | None) -> tuple[int | None, int | None]:
    if head is None or not head.sbit:
        return None, None
    sbit = head.sbit
    has_alpha = head.colour_type in (4, 6)
    colour = sbit[:-1] if has_alpha and len(sbit) > 1 else sbit
    return max(colour), (sbit[-1] if has_alpha and len(sbit) > 1 else None)


def container_bits(path: Path, head: PngHeader | None = None) -> int:
    """Bits per sample the file is stored with, from its header: 8 for JPEG/BMP (and unreadable files).
    `head`: its PNG header when the caller has read it already."""
    head = head or png_header(path)
    if head is not None:
        return head.bit_depth
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                return int(max(np.atleast_1d(im.tag_v2.get(258, (8,)))))
        except (OSError, ValueError, AttributeError):
            return 16     # let the decoder decide
    return 8


def round_bits(maximum: int) -> int:
    """The smallest of 8/10/12/14/16 bits that holds `maximum`."""
    return next((b for b in STEPS if maximum < 1 << b), 16)


@dataclass(frozen=True)
class Depth:
    """The data depth of a category's 16-bit files (bits=None: its files are 8-bit) and how it was found."""

    bits: int | None
    how: str

    def describe(self) -> str:
        """One line for `scan` and the build report."""
        return "8-bit files" if self.bits is None else f"{self.bits}-bit data in 16-bit files ({self.how})"


def data_depth(paths: Sequence[Path]) -> Depth:
    """The depth of a category's 16-bit images (see the module docstring), from the PNG sBIT chunks when
    every 16-bit file has one, else from the largest colour value over the 16-bit files (decoded here).

    Files that cannot be read are left out (whoever loads them reports them).
    """
    from synth.datasets.decode import colour_channels, read_raw
    from synth.errors import ImageError

    sbits, maximum, wide = [], 0, 0
    for p in paths:
        head = png_header(p)                # read once: container depth and sBIT both come from it
        if container_bits(p, head) <= 8:
            continue
        bits, _ = _sbit_bits(head)
        if bits is not None:
            sbits.append(bits)
            wide += 1
            continue
        try:
            img = read_raw(p)
        except ImageError:
            continue
        if img.dtype != np.uint16:
            continue
        wide += 1
        maximum = max(maximum, int(colour_channels(img).max(initial=0)))
    if not wide:
        return Depth(None, "8-bit files")
    if len(sbits) == wide:
        return Depth(max(sbits), f"PNG sBIT of {wide} file(s)")
    bits = max(round_bits(maximum), *sbits) if sbits else round_bits(maximum)
    return Depth(bits, f"largest value {maximum} over {wide} file(s), rounded up to {bits} bits")

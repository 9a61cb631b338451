"""A file's pixels as stored: decoded without conversion, turned upright by EXIF orientation, colour and alpha apart.

The lowest layer of image reading: synth.datasets.images (conversion to RGB uint8 and masks) and
synth.datasets.bitdepth (how many bits are data) both read files through it.
"""

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from synth.errors import ImageError

_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


def broken_link(path: Path) -> str | None:
    """The problem of a symbolic link whose target is gone (glob and is_file() skip such files), else None."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def orientation(path: Path) -> int:
    """The EXIF orientation (1..8) of a JPEG or PNG (cameras and phones store it) that OpenCV's
    IMREAD_UNCHANGED leaves unapplied; 1 when absent. TIFFs: OpenCV and Pillow both apply their tag."""
    if Path(path).suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return 1
    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError):
        return 1
    return value if value in _ORIENT else 1


def read_raw(path: Path) -> np.ndarray:
    """The file's pixels as stored (uint8/uint16/float; grey (H, W) or BGR(A) (H, W, C)), turned upright by
    its EXIF orientation. ImageError naming the file when it is missing, a broken link, empty or corrupt."""
    path = Path(path)
    problem = broken_link(path)
    if problem:
        raise ImageError(problem)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    turn = orientation(path)
    return np.ascontiguousarray(_ORIENT[turn](img)) if turn != 1 else img


def colour_channels(img: np.ndarray) -> np.ndarray:
    """The colour part of a decoded image: grey (H, W) or BGR (H, W, 3), alpha left out."""
    if img.ndim == 2:
        return img
    if img.shape[2] in (2, 4):
        return img[:, :, :-1] if img.shape[2] == 4 else img[:, :, 0]
    return img[:, :, 0] if img.shape[2] == 1 else img[:, :, :3]


def _alpha(img: np.ndarray) -> np.ndarray | None:
    return img[:, :, -1] if img.ndim == 3 and img.shape[2] in (2, 4) else None


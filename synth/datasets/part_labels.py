"""Part masks from outside (`build --regions DIR`, `show --regions DIR`): one label image per normal image,
used in place of the classical semantic regions.

The paper selects semantic regions with SAM (method.md step 3); SAM weights cannot be had here, so the
default regions are classical (synth.features.regions). A team with SAM, another segmenter or hand annotations gives
its part masks as label images: `<DIR>/<stem>.png` (or `<DIR>/<category>/<stem>.png` when that folder
exists) for the normal image `<stem>.*`, single channel, 8- or 16-bit, 0 = background, 1..K = parts. They are
resized to the build size with nearest-neighbour sampling (labels stay labels) and pass the same scale rule
as the classical regions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from synth.datasets.images import alpha_shape, read_layers
from synth.errors import DatasetError

ASPECT_TOLERANCE = 0.02  # relative difference of height/width allowed between a label image and its photo


def label_files(directory: Path, images: list[Path], category: str | None = None) -> list[Path]:
    """The label image of each normal image, in order; DatasetError naming the first missing file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"--regions {directory}: not a folder")
    if category is not None and (directory / category).is_dir():
        directory = directory / category
    found = [directory / f"{Path(p).stem}.png" for p in images]
    missing = [f for f in found if not f.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: no part label image for {images[found.index(missing[0])]} "
                           f"({len(missing)} of {len(found)} missing in {directory}); --regions needs one "
                           "<stem>.png per normal image")
    return found


def labels_key(files: list[Path]) -> str:
    """Short sha256 over the label files' names and contents: changes whenever any label changes."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(Path(f).read_bytes()).digest())
    return h.hexdigest()[:16]


def read_part_labels(path: Path, image_shape: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """uint16 (H, W) part labels from `path`, resized (nearest neighbour) to `size` (int: square; or (W, H)).

    `image_shape` is the (height, width) of the photo the labels belong to: a label image of another aspect
    ratio was made for another picture (or cropped) and is refused. DatasetError naming the file for a
    colour, float or otherwise non-label image; ImageError for an unreadable one. A label image with a varying
    alpha (LA, grey RGBA, grey palette or grey with tRNS) is background (0) where alpha < half its range;
    a constant alpha is ignored (labels are never scaled).
    """
    raw, alpha = read_layers(Path(path))
    if raw.ndim == 3 and (raw.shape[2] == 1 or (alpha is not None and (raw == raw[:, :, :1]).all())):
        raw = raw[:, :, 0]                  # grey with alpha decodes as BGRA (LA, grey palette with tRNS)
    if raw.ndim != 2 or raw.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: a part label image must be single-channel 8- or 16-bit (0 = background, "
                           f"1..K = parts), not {raw.dtype} with shape {raw.shape}")
    (h, w), (ih, iw) = raw.shape, image_shape
    if abs(h / w - ih / iw) > ASPECT_TOLERANCE * (ih / iw):
        raise DatasetError(f"{path}: label image is {w}x{h} but its photo is {iw}x{ih} (another aspect ratio); "
                           "export the labels at the photo's size")
    shape = alpha_shape(alpha)
    if shape is not None:
        raw = np.where(shape, raw, 0).astype(raw.dtype)
    out_w, out_h = (size, size) if isinstance(size, int) else size
    return cv2.resize(raw.astype(np.uint16), (out_w, out_h), interpolation=cv2.INTER_NEAREST)

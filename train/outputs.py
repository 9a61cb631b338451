"""What `logical-train predict` writes per image, shared by the PyTorch and the exported-model paths.

Torch-free on purpose (numpy, OpenCV, Pillow only): `predict --model` runs on inspection stations without
PyTorch. Per image, in the output folder: `<stem>_map.png` (the map, 8-bit, 0..255 = probability 0..1, at
the image's size), `<stem>_overlay.png` (JET colours over the image) and, with calibrated thresholds,
`<stem>_mask.png` (the defect mask, 0 or 255: train.thresholds.defect_mask of the map at the image's size);
`scores.csv` lists `path,score,decision` (OK / NG; empty without thresholds).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from synth.console import say
from synth.datasets.decode import broken_link
from synth.datasets.images import IMAGE_SUFFIXES, list_images, load_rgb, save_image
from synth.errors import ImageError
from train.thresholds import defect_mask


def upsample_map(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A model-resolution map resized bilinearly to a ground truth's (H, W); float32."""
    h, w = int(shape[0]), int(shape[1])
    if amap.shape == (h, w):
        return amap.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if h <= amap.shape[0] and w <= amap.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(amap.astype(np.float32, copy=False), (w, h), interpolation=interp)


def colour_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The map (fixed scale 0..1, JET colours) blended over an RGB image of the same size."""
    heat = cv2.applyColorMap(np.clip(np.rint(amap * 255.0), 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image, 1.0 - alpha, heat[:, :, ::-1], alpha, 0.0)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Image files as given, folders replaced by the images directly inside them (sorted)."""
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise ImageError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif broken_link(p):
            raise ImageError(broken_link(p))
        else:
            raise ImageError(f"{p}: no such file or folder")
    if not paths:
        raise ImageError("no input images given")
    return paths


def output_stems(paths: Sequence[Path]) -> list[str]:
    """File stems made unique (`name`, `name-2`, ...) so images from different folders do not collide."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        stems.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return stems


def load_chunk(chunk: Sequence[tuple[Path, str]], bits: int | None, skip_bad: bool,
               skipped: list[str]) -> list[tuple[Path, str, np.ndarray]]:
    """(path, output stem, RGB uint8 image) of each readable image of `chunk`; an unreadable one raises its
    ImageError, or with `skip_bad` is warned about and appended to `skipped` (predict and predict --model)."""
    loaded = []
    for path, stem in chunk:
        try:
            loaded.append((path, stem, load_rgb(path, bits)))
        except ImageError as exc:
            if not skip_bad:
                raise
            say(f"warning: skipped {exc}")
            skipped.append(str(exc))
    return loaded


def write_image_outputs(out_dir: Path, stem: str, image: np.ndarray, amap: np.ndarray, ng: bool | None,
                        thresholds: dict | None) -> None:
    """The map, overlay and (with thresholds) mask PNGs of one image; `amap` at model resolution."""
    full = upsample_map(amap, image.shape[:2])
    save_image(out_dir / f"{stem}_map.png", np.clip(np.rint(full * 255.0), 0, 255).astype(np.uint8))
    save_image(out_dir / f"{stem}_overlay.png", colour_overlay(image, full))
    if thresholds and ng is not None:
        save_image(out_dir / f"{stem}_mask.png", defect_mask(full, bool(ng), thresholds).astype(np.uint8) * 255)


def write_scores(out_dir: Path, rows: Sequence[tuple[Path, float, bool | None]], skipped: Sequence[str]) -> None:
    """scores.csv (`path,score,decision`) and, when images were skipped, skipped.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "score", "decision"])
        writer.writerows((str(p), f"{s:.6f}", "" if ng is None else ("NG" if ng else "OK")) for p, s, ng in rows)
    if skipped:
        (out_dir / "skipped.txt").write_text("\n".join(skipped) + "\n")

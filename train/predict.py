"""Anomaly maps and scores for arbitrary image files with a trained checkpoint (no ground truth needed).

Per image, in the output folder: `<stem>_map.png` (the raw map, 8-bit, 0..255 = probability 0..1, at the
image's size) and `<stem>_overlay.png` (the map as JET colours over the image); `scores.csv` lists
`path,score` with the same image score as evaluation (max after the scaled 21 x 21 average pool; a global
arch's `combine` may average it with the branch's image probability, and its map combine the two maps).
"""

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth.bitdepth import data_depth
from synth.console import say
from synth.errors import ImageError
from synth.images import IMAGE_SUFFIXES, broken_link, list_images, load_rgb, save_image
from train.evaluate import batches, colour_overlay, infer, require_finite, resolve_device, upsample_map
from train.model import load_checkpoint


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


def _output_stems(paths: Sequence[Path]) -> list[str]:
    """File stems made unique (`name`, `name-2`, ...) so images from different folders do not collide."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        stems.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return stems


def predict(checkpoint: Path, inputs: Sequence[Path], out_dir: Path, device: str = "auto",
            batch_size: int = 8, skip_bad: bool = False) -> tuple[list[tuple[Path, float]], list[str]]:
    """Write maps, overlays and scores.csv for every input image; return ((path, score) rows, skipped).

    An unreadable image raises ImageError naming it, unless skip_bad: then it is reported on stderr,
    listed in `skipped.txt` and left out.
    """
    paths = expand_inputs(inputs)
    depth = data_depth(paths)       # the inputs are one category: one scale for their 16-bit files
    if depth.bits is not None:
        say(f"images: {depth.describe()}")
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    model, config = load_checkpoint(Path(checkpoint), str(dev))
    size = int(config["size"])
    rows: list[tuple[Path, float]] = []
    skipped: list[str] = []
    jobs = list(zip(paths, _output_stems(paths), strict=True))
    for chunk in batches(jobs, batch_size, "predict"):
        loaded = []
        for path, stem in chunk:
            try:
                loaded.append((path, stem, load_rgb(path, depth.bits)))
            except ImageError as exc:
                if not skip_bad:
                    raise
                say(f"warning: skipped {exc}")
                skipped.append(str(exc))
        if not loaded:
            continue
        maps, scores = infer(model, [img for _, _, img in loaded], size, dev)
        require_finite(checkpoint, [path for path, _, _ in loaded], maps, scores)
        for (path, stem, image), amap, score in zip(loaded, maps, scores, strict=True):
            full = upsample_map(amap, image.shape[:2])
            save_image(out_dir / f"{stem}_map.png", np.clip(np.rint(full * 255.0), 0, 255).astype(np.uint8))
            save_image(out_dir / f"{stem}_overlay.png", colour_overlay(image, full))
            rows.append((path, float(score)))
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "score"])
        writer.writerows((str(p), f"{s:.6f}") for p, s in rows)
    if skipped:
        (out_dir / "skipped.txt").write_text("\n".join(skipped) + "\n")
    return rows, skipped

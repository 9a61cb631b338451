"""`scan`: count what a dataset holds and find every problem in it before a long job trips over one."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from synth.console import progress
from synth.datasets.base import Listing, Reader
from synth.errors import DatasetError


def probe(path: Path) -> tuple[int, int] | str:
    """(width, height) of an image after decoding it fully, or the reason it cannot be read."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return f"{path}: cannot read file ({exc.strerror or exc})"
    if data.size == 0:
        return f"{path}: file is empty"
    if path.suffix.lower() in (".jpg", ".jpeg") and b"\xff\xd9" not in data[-1024:].tobytes():
        return f"{path}: truncated JPEG (no end-of-image marker)"
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        return f"{path}: not a readable image (corrupt or unsupported format)"
    return int(img.shape[1]), int(img.shape[0])


def _listing(reader: Reader, category: str) -> Listing:
    if hasattr(reader, "listing"):
        return reader.listing(category)
    return Listing(reader.train_images(category), reader.validation_images(category),
                   reader.test_items(category), [])


def _probe_all(paths: list[Path], desc: str) -> list[tuple[int, int] | str]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(progress(pool.map(probe, paths), desc=desc, total=len(paths)))


def scan_category(reader: Reader, category: str) -> dict:
    """Counts, image sizes and problems of one category (see `scan_dataset`)."""
    listing = _listing(reader, category)
    problems = list(listing.problems)
    images = listing.train + listing.validation + [it.path for it in listing.test]
    sizes: dict[Path, tuple[int, int]] = {}
    for path, result in zip(images, _probe_all(images, f"scan {category} images"), strict=True):
        if isinstance(result, str):
            problems.append(result)
        else:
            sizes[path] = result
    pairs = [(it.path, it.mask_path) for it in listing.test if it.mask_path is not None]
    pairs += [(it.path, r.path) for it in listing.test for r in it.regions]
    for (image, mask), result in zip(pairs, _probe_all([m for _, m in pairs], f"scan {category} masks"),
                                     strict=True):
        if isinstance(result, str):
            problems.append(result)
        elif image in sizes and result != sizes[image]:
            w, h = sizes[image]
            problems.append(f"{mask}: mask is {result[0]}x{result[1]} but its image {image} is {w}x{h}")
    size_counts = Counter(f"{w}x{h}" for w, h in sizes.values())
    return {"train": len(listing.train), "validation": len(listing.validation),
            "test": dict(sorted(Counter(it.split for it in listing.test).items())),
            "masks": len(pairs), "sizes": dict(size_counts.most_common()), "problems": problems}


def scan_dataset(reader: Reader, category: str | None = None) -> dict:
    """Counts, sizes and problems: {"dataset", "categories": {name: {train, validation, test: {split: n},
    masks, sizes: {"WxH": n}, problems: [str]}}}.

    Every image and mask is decoded (in threads, with a progress bar); problems are collected, not raised.
    """
    names = reader.categories()
    if category is not None:
        if category not in names:
            raise DatasetError(f"{reader.root}: no category {category!r}; available: {', '.join(names)}")
        names = [category]
    return {"dataset": reader.name, "categories": {c: scan_category(reader, c) for c in names}}


def format_report(report: dict) -> str:
    """A readable table of a `scan_dataset` result, followed by the problems."""
    head = ("category", "train", "valid", "test", "masks", "sizes", "problems")
    rows = []
    for name, c in report["categories"].items():
        test = ", ".join(f"{s} {n}" for s, n in c["test"].items()) or "-"
        sizes = ", ".join(f"{s} ({n})" for s, n in c["sizes"].items()) or "-"
        rows.append((name, str(c["train"]), str(c["validation"]), test, str(c["masks"]), sizes,
                     str(len(c["problems"]))))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    header = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    lines = [f"dataset: {report['dataset']}", header]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    total = 0
    for name, c in report["categories"].items():
        if c["problems"]:
            lines += ["", f"problems in {name}:"] + [f"  - {p}" for p in c["problems"]]
            total += len(c["problems"])
    lines += ["", f"{total} problem(s) found" if total else "no problems found"]
    return "\n".join(lines)

"""`scan`: count what a dataset holds and find every problem in it before a long job trips over one."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from synth.console import progress
from synth.datasets.base import Listing, Reader, size_mismatch
from synth.datasets.bitdepth import data_depth
from synth.datasets.decode import broken_link, read_raw
from synth.datasets.images import defect_pixels, mask_layers
from synth.errors import DatasetError, ImageError


def probe(path: Path) -> tuple[int, int] | str:
    """(width, height) of an image after decoding it fully (upright), or the reason it cannot be read."""
    result = _decode(path)
    return result if isinstance(result, str) else (int(result.shape[1]), int(result.shape[0]))


def _decode(path: Path) -> np.ndarray | str:
    try:
        if path.suffix.lower() in (".jpg", ".jpeg") and not broken_link(path):
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 1024))
                if b"\xff\xd9" not in fh.read():
                    return f"{path}: truncated JPEG (no end-of-image marker)"
        return read_raw(path)
    except OSError as exc:
        return f"{path}: cannot read file ({exc.strerror or exc})"
    except ImageError as exc:
        return str(exc)


def probe_mask(path: Path, pixel_value: int | None = None) -> tuple[tuple[int, int], str | None, bool] | str:
    """((width, height), note, shape from alpha) of a mask after decoding it, or the reason it cannot be read;
    the note says how a mask that is not two-level is read (see synth.datasets.images.defect_pixels and
    DefectRegion.mask); the flag says its varying alpha is the shape (synth.datasets.images.alpha_shape)."""
    try:
        values, shape = mask_layers(path)
    except ImageError as exc:
        return str(exc)
    size = (int(values.shape[1]), int(values.shape[0]))
    if shape is not None and pixel_value is None:
        note = None
    elif pixel_value is None:
        note = defect_pixels(values, path)[1]
    elif np.count_nonzero(values[(values != 0) & (values != pixel_value)]):
        levels = np.unique(values).size
        note = (f"holds {levels} values, not just 0 and its pixel value {pixel_value}: "
                f"read as defect where value >= {(pixel_value + 1) // 2}")
    else:
        note = None
    return size, (f"{path}: {note}" if note else None), shape is not None


def _listing(reader: Reader, category: str) -> Listing:
    if hasattr(reader, "listing"):
        return reader.listing(category)
    return Listing(reader.train_images(category), reader.validation_images(category),
                   reader.test_items(category), [])


def _probe_all(paths: list[Path], desc: str) -> list[tuple[int, int] | str]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(progress(pool.map(probe, paths), desc=desc, total=len(paths)))


def _probe_masks(jobs: list[tuple[Path, int | None]], desc: str) -> list:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(progress(pool.map(lambda job: probe_mask(*job), jobs), desc=desc, total=len(jobs)))


def scan_category(reader: Reader, category: str) -> dict:
    """Counts, image sizes, bit depth, problems and notes of one category (see `scan_dataset`)."""
    listing = _listing(reader, category)
    problems = list(listing.problems)
    notes: list[str] = []
    images = listing.train + listing.validation + [it.path for it in listing.test]
    sizes: dict[Path, tuple[int, int]] = {}
    for path, result in zip(images, _probe_all(images, f"scan {category} images"), strict=True):
        if isinstance(result, str):
            problems.append(result)
        else:
            sizes[path] = result
    depth = data_depth(listing.train)
    if depth.bits is not None:
        notes.append(f"images: {depth.describe()}; every image of {category} is scaled by 255/{2 ** depth.bits - 1}")
    jobs = [(it.path, it.mask_path, None) for it in listing.test if it.mask_path is not None]
    jobs += [(it.path, r.path, r.pixel_value) for it in listing.test for r in it.regions]
    results = _probe_masks([(m, v) for _, m, v in jobs], f"scan {category} masks")
    from_alpha = 0
    for (image, mask, _), result in zip(jobs, results, strict=True):
        if isinstance(result, str):
            problems.append(result)
            continue
        (w, h), note, alpha = result
        from_alpha += alpha
        if note:
            notes.append(note)
        problem = size_mismatch(mask, (h, w), image, sizes[image][::-1]) if image in sizes else None
        if problem:
            problems.append(problem)
    if from_alpha:
        notes.append(f"masks: shape from alpha ({from_alpha} files): defect where alpha >= half its range, "
                     "whatever the colour")
    size_counts = Counter(f"{w}x{h}" for w, h in sizes.values())
    return {"train": len(listing.train), "validation": len(listing.validation),
            "test": dict(sorted(Counter(it.split for it in listing.test).items())),
            "masks": len(jobs), "sizes": dict(size_counts.most_common()), "bit_depth": depth.describe(),
            "problems": list(dict.fromkeys(problems)), "notes": notes}


def scan_dataset(reader: Reader, category: str | None = None) -> dict:
    """Counts, sizes and problems: {"dataset", "problems": [str], "categories": {name: {train, validation,
    test: {split: n}, masks, sizes: {"WxH": n}, bit_depth: str, problems: [str], notes: [str]}}}; the top
    "problems" are the root's own (a category folder that is a broken link), empty with `category`.

    Problems (unreadable images, broken links, missing masks, masks of the wrong size) make `scan` fail;
    notes (16-bit data depth, soft or lossy masks and how they are read) do not.

    Every image and mask is decoded (in threads, with a progress bar); problems are collected, not raised.
    """
    names = reader.categories()
    if category is not None:
        if category not in names:
            raise DatasetError(reader.unknown_category(category))
        names = [category]
    return {"dataset": reader.name, "problems": [] if category is not None else list(reader.problems),
            "categories": {c: scan_category(reader, c) for c in names}}


def has_problems(report: dict) -> bool:
    """Whether a `scan_dataset` report holds any problem (scan's exit code 1)."""
    return bool(report["problems"]) or any(c["problems"] for c in report["categories"].values())


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
    total = len(report["problems"])
    if report["problems"]:
        lines += ["", "problems in the root:"] + [f"  - {p}" for p in report["problems"]]
    for name, c in report["categories"].items():
        if c.get("notes"):
            lines += ["", f"notes on {name}:"] + [f"  - {n}" for n in c["notes"]]
        if c["problems"]:
            lines += ["", f"problems in {name}:"] + [f"  - {p}" for p in c["problems"]]
            total += len(c["problems"])
    lines += ["", f"{total} problem(s) found" if total else "no problems found"]
    return "\n".join(lines)

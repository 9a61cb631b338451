"""Looking at a generated dataset (directory or archive): a summary of what it holds (`inspect_path`, as
text by `format_summary` or as JSON) and a contact sheet of some of its samples (`write_sheet`).

An archive is summarised from its members in place (nothing unpacked); the sheet reads it through
`synth.store.archive.open_dataset_path` (verified and unpacked once into the cache).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from synth import __version__
from synth.datasets.images import save_image
from synth.errors import ArchiveError, ShardError
from synth.sheet import contact_sheet
from synth.store.archive import archive_identity, open_archive, open_dataset_path
from synth.store.manifest import read_manifest, total_samples
from synth.store.reader import GeneratedDataset
from synth.store.schema import GENERATOR, SHARD_PATTERN, SOURCES

SHEET_COLUMNS = ["normal", "anomaly", "mask overlay"]
SHEET_TILE = 160          # larger images are shown at this size on the sheet


@contextlib.contextmanager
def _h5_opener(path: Path) -> Iterator[tuple[dict, Callable[[str], Any]]]:
    """The manifest and a function giving something h5py.File opens, for a directory or an archive member."""
    path = Path(path)
    if path.is_dir():
        yield read_manifest(path), lambda name: path / name
    elif path.is_file():
        with open_archive(path) as idx:
            def member(name: str) -> BinaryIO:
                if name not in idx.members:
                    raise ArchiveError(f"{path}: {name} is missing from the archive")
                return idx.tar.extractfile(idx.members[name])
            yield idx.manifest, member
    else:
        raise ArchiveError(f"{path}: no such file or directory")


def _h5(src: Any, name: str) -> h5py.File:
    try:
        return h5py.File(src, "r")
    except (OSError, ValueError) as exc:
        raise ShardError(f"{name}: unreadable HDF5 file ({exc})") from None


def _spread(n: int, k: int) -> list[int]:
    """At most k sample indices spread evenly over 0..n-1 (first and last included)."""
    if n <= 0:
        return []
    return [int(i) for i in np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))]


def inspect_path(path: Path, max_masks: int = 2000) -> dict:
    """Summary of a generated dataset (directory or archive): counts, mask areas, size, config, rejections."""
    with _h5_opener(path) as (manifest, opener):
        files = manifest["files"]
        with _h5(opener(SOURCES), SOURCES) as f:
            n_sources, height, width = f["image"].shape[:3]
        n, shard_size = total_samples(manifest), int(manifest["shard_size"])
        picks = _spread(n, max_masks)
        areas = []
        for k in sorted({i // shard_size for i in picks}):
            name = f"shard-{k:05d}.h5"
            with _h5(opener(name), name) as f:
                for i in (i for i in picks if i // shard_size == k):
                    mask = f["mask"][i - k * shard_size]
                    areas.append(np.count_nonzero(mask) / mask.size)
    counts = manifest.get("counts", {})
    return {"path": str(path), "dataset": manifest.get("dataset"), "category": manifest.get("category"),
            "licence": manifest.get("licence"), "tool_version": manifest.get("version"),
            "schema": manifest["schema"],
            "samples": n, "shards": sum(1 for x in files if SHARD_PATTERN.match(x)), "shard_size": shard_size,
            "sources": int(n_sources), "image_size": {"height": int(height), "width": int(width)},
            "by_kind": counts.get("by_kind", {}), "by_strategy": counts.get("by_strategy", {}),
            "rejections": counts.get("rejections", {}),
            "mask_area": {"measured": len(areas), "min": float(np.min(areas)) if areas else None,
                          "median": float(np.median(areas)) if areas else None,
                          "max": float(np.max(areas)) if areas else None},
            "seed": manifest.get("seed"), "config": manifest.get("config", {}),
            "files": len(files), "bytes": sum(e["size"] for e in files.values()),
            "generator": GENERATOR in files, "reader_version": __version__, "identity": archive_identity(path)}


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"


def format_summary(s: dict) -> str:
    """The human-readable form of `inspect_path`'s summary."""
    a = s["mask_area"]
    area = (f"min {a['min']:.4f}, median {a['median']:.4f}, max {a['max']:.4f} "
            f"(fraction of the image, {a['measured']} samples)") if a["measured"] else "-"
    config = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(s["config"].items())) or "-"
    return "\n".join([
        f"{s['dataset']} / {s['category']}   (logical {s['tool_version']}, schema {s['schema']})",
        f"identity:     {s['identity']}  (sha256 of manifest.json; check with verify --expect)",
        f"licence:      {s['licence']}",
        f"samples:      {s['samples']} in {s['shards']} shard(s) of {s['shard_size']}",
        f"sources:      {s['sources']} normal images",
        f"image size:   {s['image_size']['width']} x {s['image_size']['height']} (W x H)",
        f"by kind:      {_pairs(s['by_kind'])}",
        f"by strategy:  {_pairs(s['by_strategy'])}",
        f"rejections:   {_pairs(s['rejections'])}",
        f"mask area:    {area}",
        f"seed:         {s['seed']}",
        f"config:       {config}",
        f"files:        {s['files']} ({s['bytes'] / 1e6:.1f} MB)"
        + (", generator included" if s["generator"] else ""),
    ])


def mask_overlay(anomaly: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The anomaly with its masked pixels tinted half-way to red."""
    out = anomaly.copy()
    m = mask > 0
    out[m] = (0.5 * out[m] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    return out


def write_sheet(path: Path, out: Path, n: int = 16, cache_dir: Path | None = None) -> Path:
    """PNG contact sheet of n samples spread evenly over the dataset (directory or archive):
    normal | anomaly | mask overlay per row, labelled `#index kind/strategy`."""
    with GeneratedDataset(open_dataset_path(path, cache_dir), verify=False) as ds:
        if len(ds) == 0:
            raise ShardError(f"{path}: the dataset holds no samples")
        rows, labels = [], []
        for i in _spread(len(ds), max(1, n)):
            s = ds[i]
            rows.append([s.normal, s.anomaly, mask_overlay(s.anomaly, s.mask)])
            labels.append(f"#{s.meta['index']} {s.meta['kind']}/{s.meta['strategy']}")
    tile = SHEET_TILE if max(rows[0][0].shape[:2]) > SHEET_TILE else None
    save_image(out, contact_sheet(rows, labels, SHEET_COLUMNS, tile=tile))
    return Path(out)

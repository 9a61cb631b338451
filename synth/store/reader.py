"""Reading a generated dataset: (anomaly, mask, normal, jnd, edge) per sample, files opened lazily (per process).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from synth.errors import ShardError
from synth.store.manifest import open_h5, read_manifest, total_samples, verify_dataset
from synth.store.schema import HAS_NORMAL, KINDS, SOURCE_DATASETS, SOURCES, shard_name


@dataclass
class Sample:
    """One training sample: anomaly image, mask (u8 0/255); the source's image, JND (u8) and edges (u8).
    meta["has_normal"]: False where `normal` is not a true normal image (an import without one; schema.py)."""

    anomaly: np.ndarray
    mask: np.ndarray
    normal: np.ndarray
    jnd: np.ndarray
    edge: np.ndarray
    meta: dict


class GeneratedDataset:
    """Random access to a generated dataset directory; h5 files open lazily and reopen after fork."""

    def __init__(self, directory: Path, verify: bool = True):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        if verify:
            problems = verify_dataset(self.directory)
            if problems:
                raise ShardError(f"{self.directory}: generated dataset failed verification:\n  "
                                 + "\n  ".join(problems))
        self.shard_size = int(self.manifest["shard_size"])
        self._len = total_samples(self.manifest)
        self._pid = os.getpid()
        self._files: dict[str, h5py.File] = {}
        self._strategies: dict[str, list[str]] = {}
        self._meta: dict[str, dict[str, np.ndarray]] = {}
        self._n_sources: int | None = None

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}

    def _h5(self, name: str) -> h5py.File:
        if os.getpid() != self._pid:  # forked: inherited HDF5 handles are not safe to share
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open_h5(self.directory / name)
        return f

    def _read(self, name: str, dataset: str, row: int):
        try:
            return self._h5(name)[dataset][row]
        except (OSError, KeyError, ValueError) as exc:
            raise ShardError(f"{self.directory / name}: cannot read {dataset}[{row}] ({exc})") from None

    def source_count(self) -> int:
        """Number of normal source images in sources.h5."""
        if self._n_sources is None:
            self._n_sources = int(self._h5(SOURCES)["image"].shape[0])
        return self._n_sources

    def source(self, source: int) -> dict:
        """Per-source arrays from sources.h5: image, jnd, edge, foreground, regions, render and path."""
        if not 0 <= source < self.source_count():
            raise ShardError(f"{self.directory / SOURCES}: source {source} out of range")
        out = {d: self._read(SOURCES, d, source) for d in SOURCE_DATASETS}
        out["path"] = out["path"].decode() if isinstance(out["path"], bytes) else str(out["path"])
        return out

    def _source_views(self, source: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= source < self.source_count():
            raise ShardError(f"{self.directory / SOURCES}: source {source} is out of range")
        return tuple(self._read(SOURCES, d, source) for d in ("image", "jnd", "edge"))

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"sample {index} out of range (dataset has {self._len})")
        name, row = shard_name(index // self.shard_size), index % self.shard_size
        table = self._shard_meta(name)
        if row >= len(table["source"]):
            raise ShardError(f"{self.directory / name}: holds {len(table['source'])} samples, sample {index} "
                             "is missing (dataset not verified?)")
        anomaly, mask = self._read(name, "anomaly", row), self._read(name, "mask", row)
        src, kind, strategy = (int(table[d][row]) for d in ("source", "kind", "strategy"))
        normal, jnd, edge = self._source_views(src)
        try:
            meta = {"index": index, "source": src, "kind": KINDS[kind],
                    "strategy": self._strategies[name][strategy], "seed": int(table["seed"][row]),
                    "bbox": tuple(int(v) for v in table["bbox"][row]), "has_normal": bool(table[HAS_NORMAL][row])}
        except IndexError:
            raise ShardError(f"{self.directory / name}: sample {index} has kind {kind} / strategy {strategy} "
                             "out of range") from None
        return Sample(anomaly, mask, normal, jnd, edge, meta)

    def _shard_meta(self, name: str) -> dict[str, np.ndarray]:
        """A shard's per-sample scalars, read once (a few bytes per sample)."""
        if name not in self._meta:
            f = self._h5(name)
            try:
                self._strategies[name] = json.loads(f.attrs["strategies"])
                self._meta[name] = {d: f[d][()] for d in ("source", "kind", "strategy", "seed", "bbox")}
                rows = len(self._meta[name]["source"])   # HAS_NORMAL is optional: absent = every sample has one
                self._meta[name][HAS_NORMAL] = f[HAS_NORMAL][()] if HAS_NORMAL in f else np.ones(rows, np.uint8)
            except (OSError, KeyError, ValueError) as exc:
                raise ShardError(f"{self.directory / name}: cannot read sample metadata ({exc})") from None
        return self._meta[name]

    def true_normal_sources(self) -> np.ndarray:
        """int64 indices of the sources no sample marks as holding no true normal (HAS_NORMAL 0): those a
        trainer may show as normal images (all of them in a dataset without the column)."""
        shards = range(-(-self._len // self.shard_size))
        bad = [t["source"][t[HAS_NORMAL] == 0] for t in (self._shard_meta(shard_name(k)) for k in shards)]
        return np.setdiff1d(np.arange(self.source_count()), np.concatenate([np.zeros(0, np.int32), *bad]))

    def normal(self, source: int) -> Sample:
        """An unaltered source as a sample: anomaly == normal, mask all zeros, kind "good"."""
        normal, jnd, edge = self._source_views(int(source))
        meta = {"index": -1, "source": int(source), "kind": "good", "strategy": "none", "seed": 0,
                "bbox": (0, 0, 0, 0), "has_normal": True}
        return Sample(normal.copy(), np.zeros(normal.shape[:2], np.uint8), normal, jnd, edge, meta)

    def close(self) -> None:
        """Close open h5 files (they reopen on the next read)."""
        if os.getpid() == self._pid:
            for f in self._files.values():
                with contextlib.suppress(Exception):
                    f.close()
        self._files = {}

    def __enter__(self) -> GeneratedDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Generated datasets on disk (schema v1): atomic HDF5 writers, the manifest, verification and the reader.

A file is either complete and listed in `manifest.json` (with its sha256 and size) or it does not exist under
its final name: writers fill `<name>.tmp`, fsync it and its directory, then rename. Plain h5py reads it all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synth.errors import ShardError
from synth.store.atomic import discard_tmp, h5_tmp, publish
from synth.store.schema import HAS_NORMAL, JND_SCALE, KINDS, SCHEMA_VERSION


def _create(f: h5py.File, name: str, data_or_shape, dtype, capacity: int | None = None) -> h5py.Dataset:
    """A dataset chunked one sample per chunk, gzip level 1 (scalars per sample stay contiguous chunks).

    Not lzf: h5py's bundled liblzf hashes uninitialised memory, so equal data can compress to different bytes.
    """
    shape = data_or_shape.shape if isinstance(data_or_shape, np.ndarray) else tuple(data_or_shape)
    rows = shape[0] if capacity is None else capacity
    kwargs: dict[str, Any] = {"dtype": dtype, "maxshape": (rows, *shape[1:])}
    if len(shape) >= 3 and rows > 0:
        kwargs.update(chunks=(1, *shape[1:]), compression="gzip", compression_opts=1)
    elif rows > 0:
        kwargs["chunks"] = (min(rows, 4096), *shape[1:])
    if isinstance(data_or_shape, np.ndarray):
        ds = f.create_dataset(name, data=data_or_shape, **kwargs)
        ds.flush()  # written out while the dataset is alive, so a full disk raises here (see discard_tmp)
        return ds
    return f.create_dataset(name, shape=(rows, *shape[1:]), **kwargs)


def _attr(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, np.integer, np.floating)) else json.dumps(value)


def write_sources(path: Path, image: np.ndarray, jnd_u8: np.ndarray, edge_u8: np.ndarray,
                  foreground: np.ndarray, regions: np.ndarray, render: np.ndarray, paths: list[str],
                  attrs: dict) -> None:
    """Write `sources.h5` atomically: per source image, JND, edges, foreground, regions and render G(E_j)."""
    s, h, w = image.shape[:3]
    arrays = {"image": (image, np.uint8, (s, h, w, 3)), "jnd": (jnd_u8, np.uint8, (s, h, w)),
              "edge": (edge_u8, np.uint8, (s, h, w)), "foreground": (foreground, np.uint8, (s, h, w)),
              "regions": (regions, np.uint16, (s, h, w)), "render": (render, np.uint8, (s, h, w, 3))}
    for name, (arr, _, shape) in arrays.items():
        if tuple(np.shape(arr)) != shape:
            raise ShardError(f"{path}: {name} has shape {np.shape(arr)}, expected {shape}")
    if len(paths) != s:
        raise ShardError(f"{path}: {len(paths)} paths for {s} sources")
    with h5_tmp(path) as f:
        for name, (arr, dtype, _) in arrays.items():
            _create(f, name, np.ascontiguousarray(np.asarray(arr).astype(dtype, copy=False)), dtype)
        f.create_dataset("path", data=np.array([str(p) for p in paths], dtype=object),
                         dtype=h5py.string_dtype("utf-8")).flush()  # see _create
        f["jnd"].attrs["jnd_scale"] = JND_SCALE
        for key, value in attrs.items():
            f.attrs[key] = _attr(value)
        f.attrs["schema"] = SCHEMA_VERSION
        f.attrs["jnd_scale"] = JND_SCALE


class ShardWriter:
    """Streams samples into `<path>.tmp` (memory flat in shard size); `close()` shrinks, fsyncs and renames.

    Used as a context manager, an exception inside the block removes the tmp file and leaves no final file.
    """

    def __init__(self, path: Path, first_index: int, capacity: int, height: int, width: int,
                 strategies: list[str], has_normal: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.capacity, self.count, self.shape = int(capacity), 0, (int(height), int(width))
        self.tmp.unlink(missing_ok=True)
        self._file: h5py.File | None = h5py.File(self.tmp, "w")
        try:
            f, h, w, n = self._file, height, width, self.capacity
            self._ds = {"anomaly": _create(f, "anomaly", (n, h, w, 3), np.uint8),
                        "mask": _create(f, "mask", (n, h, w), np.uint8)}
            # per-sample scalars are tiny: kept in memory, written once at close (an h5py write is ~0.1 ms)
            self._meta = {"source": np.zeros(n, np.int32), "kind": np.zeros(n, np.uint8),
                          "strategy": np.zeros(n, np.uint8), "seed": np.zeros(n, np.uint64),
                          "bbox": np.zeros((n, 4), np.int32)}
            if has_normal:  # the optional HAS_NORMAL column (imports: schema.py)
                self._meta[HAS_NORMAL] = np.ones(n, np.uint8)
            f.attrs.update(schema=SCHEMA_VERSION, first_index=int(first_index),
                           strategies=json.dumps(list(strategies)), count=0)
            self._n_strategies = len(strategies)
        except BaseException:
            self.abort()
            raise

    def append(self, anomaly: np.ndarray, mask: np.ndarray, source: int, kind: int, strategy: int, seed: int,
               bbox, has_normal: bool = True) -> None:
        """Add one sample; mask may be bool or uint8 (anything > 0 is stored as 255). `has_normal` is stored
        only by a writer opened with has_normal=True."""
        if self._file is None:
            raise ShardError(f"{self.path}: writer is closed")
        if self.count >= self.capacity:
            raise ShardError(f"{self.path}: shard is full ({self.capacity} samples)")
        h, w = self.shape
        if anomaly.shape != (h, w, 3) or anomaly.dtype != np.uint8 or mask.shape != (h, w):
            raise ShardError(f"{self.path}: sample has anomaly {anomaly.shape} {anomaly.dtype} and mask "
                             f"{mask.shape}, expected ({h}, {w}, 3) uint8 and ({h}, {w})")
        if kind not in range(len(KINDS)) or strategy not in range(self._n_strategies):
            raise ShardError(f"{self.path}: kind {kind} or strategy {strategy} out of range")
        i, meta = self.count, self._meta
        self._ds["anomaly"][i] = anomaly
        self._ds["mask"][i] = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
        meta["source"][i], meta["kind"][i], meta["strategy"][i] = source, kind, strategy
        meta["seed"][i] = np.uint64(seed)
        meta["bbox"][i] = np.asarray(bbox, dtype=np.int32)
        if HAS_NORMAL in meta:
            meta[HAS_NORMAL][i] = bool(has_normal)
        self.count += 1

    def close(self) -> None:
        """Shrink to the samples written, then publish the file under its final name."""
        if self._file is None:
            return
        try:
            if self.count < self.capacity:
                for ds in self._ds.values():
                    ds.resize(self.count, axis=0)
            for name, values in self._meta.items():
                _create(self._file, name, values[: self.count], values.dtype)
            self._file.attrs["count"] = self.count
            self._file.flush()    # running out of disk fails here, where abort can still discard the file
        except BaseException:
            self.abort()
            raise
        f, self._file = self._file, None
        try:
            f.close()
            publish(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Drop the partial shard: close and delete the tmp file (out of disk too, see `discard_tmp`)."""
        f, self._file = self._file, None
        discard_tmp(f, self.tmp)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

"""Generated datasets on disk (schema v1): atomic HDF5 writers, the manifest, verification and the reader.

A file is either complete and listed in `manifest.json` (with its sha256 and size) or it does not exist under
its final name: writers fill `<name>.tmp`, fsync it and its directory, then rename. Plain h5py reads it all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synth import __version__
from synth.errors import ShardError

SCHEMA_VERSION = 1
KINDS = ("logical", "structural")
JND_SCALE = 4.0
MANIFEST = "manifest.json"
SOURCES = "sources.h5"
GENERATOR = "generator.pt"
SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.h5$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
BLOCK = 4 << 20
SOURCE_DATASETS = ("image", "jnd", "edge", "foreground", "regions", "render", "path")
SHARD_DATASETS = ("anomaly", "mask", "source", "kind", "strategy", "seed", "bbox")


def shard_name(k: int) -> str:
    """File name of shard k: `shard-00000.h5`."""
    return f"shard-{k:05d}.h5"


def sha256_file(path: Path, on_bytes: Callable[[int], object] | None = None) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks; `on_bytes(n)` is told the progress."""
    digest = hashlib.sha256()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """fsync tmp, rename it to its final name, fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield `<path>.tmp` to write; on success publish it as `path`, on error remove it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_space(directory: Path, name: str, raw_bytes: int, concurrent: int = 1) -> None:
    """Fail fast, before writing, when a file will not fit: its uncompressed size (+5%, +1 MB) for every file
    being written at once must be free (OSError ENOSPC naming the file otherwise)."""
    need = (int(raw_bytes * 1.05) + (1 << 20)) * max(1, concurrent)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left for {name}: {need / 1e6:.1f} MB wanted, "
                      f"{free / 1e6:.1f} MB free", str(directory))


def _discard(f: h5py.File | None, tmp: Path) -> None:
    """Drop a partly written h5 file, also when the disk is full.

    Out of disk, HDF5 cannot write out what it caches, so it cannot close the file and the process crashes
    later on; truncating the file does not help when the cache holds more than that frees. So the file's
    descriptor is first pointed at /dev/null: the last flush succeeds (into nothing), the file closes, and
    unlinking `tmp` frees its space. That works while HDF5 still holds the file cleanly, so the writers make a
    full disk fail early: datasets are flushed as they are written (one let go unflushed fails silently and
    leaves the file unclosable) and files are flushed before they close (a failed close cannot be undone).
    """
    if f is not None:
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, f.id.get_vfd_handle())   # ValueError (nothing redirected) when f is closed
            finally:
                os.close(null)
        with contextlib.suppress(Exception):
            f.flush()
        with contextlib.suppress(Exception):
            f.close()
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _h5_tmp(path: Path) -> Iterator[h5py.File]:
    """An h5py file open for writing at `<path>.tmp`; on success published as `path`, on error discarded.

    Flushed before it is closed, so running out of disk fails in the flush, where the file can still be
    discarded safely (see `_discard`).
    """
    with atomic_path(path) as tmp:
        f = h5py.File(tmp, "w")
        try:
            yield f
            f.flush()
        except BaseException:
            _discard(f, tmp)
            raise
        f.close()


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
        ds.flush()  # written out while the dataset is alive, so a full disk raises here (see _discard)
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
    with _h5_tmp(path) as f:
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
                 strategies: list[str]):
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
            f.attrs.update(schema=SCHEMA_VERSION, first_index=int(first_index),
                           strategies=json.dumps(list(strategies)), count=0)
            self._n_strategies = len(strategies)
        except BaseException:
            self.abort()
            raise

    def append(self, anomaly: np.ndarray, mask: np.ndarray, source: int, kind: int, strategy: int, seed: int,
               bbox) -> None:
        """Add one sample; mask may be bool or uint8 (anything > 0 is stored as 255)."""
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
            _publish(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Drop the partial shard: close and delete the tmp file (out of disk too, see `_discard`)."""
        f, self._file = self._file, None
        _discard(f, self.tmp)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _file_entry(path: Path, known: dict | None = None, exact: bool = False) -> dict:
    size = path.stat().st_size
    if exact and (not known or known.get("size") != size):
        raise ShardError(f"{path}: changed after it was written or verified (size {size} bytes, "
                         f"{known.get('size') if known else 'nothing'} recorded); not sealing it in the manifest")
    sha = known["sha256"] if known and known.get("size") == size else sha256_file(path)
    entry: dict[str, Any] = {"sha256": sha, "size": size}
    if path.suffix == ".h5":
        with _open_h5(path) as f:
            entry["samples"] = int(f.attrs["count"]) if "count" in f.attrs else int(f["image"].shape[0])
    return entry


def write_manifest(directory: Path, manifest: dict, known: dict[str, dict] | None = None,
                   only_known: bool = False) -> None:
    """Write `manifest.json` atomically; fills `files` with sha256/size (and sample count) of every h5 file
    and generator.pt present in the directory. `known`: {name: {"sha256", "size"}} the caller has just
    computed (e.g. while writing shards); used when the size still matches, to skip hashing again.
    `only_known`: list exactly the files of `known` with exactly those checksums (what the caller wrote or
    verified), never hashing what is on disk now (ShardError when a file is gone or its size changed)."""
    directory = Path(directory)
    if only_known:
        names = sorted(known or {})
    else:
        names = sorted(p.name for p in directory.iterdir()
                       if p.name == SOURCES or p.name == GENERATOR or SHARD_PATTERN.match(p.name))
    data = {"schema": SCHEMA_VERSION, "tool": "logical", "version": __version__, **manifest}
    data["schema"] = SCHEMA_VERSION
    known = known or {}
    data["files"] = {name: _file_entry(directory / name, known.get(name), only_known) for name in names}
    with atomic_path(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def parse_manifest(raw: bytes, where: str) -> dict:
    """Decode and sanity-check manifest bytes; `where` names the file in messages."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ShardError(f"{where}: expected a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise ShardError(f"{where}: schema version {data.get('schema')!r} is not supported "
                         f"(this is logical {__version__}, reading schema {SCHEMA_VERSION})")
    files = data.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        raise ShardError(f"{where}: `files` must map file names to {{sha256, size}}")
    if MANIFEST in files:
        raise ShardError(f"{where}: `files` may not list {MANIFEST} itself")
    for name, entry in files.items():
        if not SAFE_NAME.match(name) or not isinstance(entry.get("size"), int) \
                or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("samples", 0), int):
            raise ShardError(f"{where}: bad files entry {name!r} (plain name with sha256 and size expected)")
    for key in ("shard_size",):
        if not isinstance(data.get(key), int) or data[key] <= 0:
            raise ShardError(f"{where}: `{key}` must be a positive integer")
    counts = data.get("counts", {})
    if not isinstance(counts, dict) or not isinstance(counts.get("samples", data.get("n")), int):
        raise ShardError(f"{where}: `counts.samples` must be an integer")
    return data


def read_manifest(directory: Path) -> dict:
    """The manifest of a generated dataset directory (ShardError: missing, corrupt or another schema)."""
    path = Path(directory) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{path}: missing (not a generated dataset directory?)") from None
    except OSError as exc:
        raise ShardError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_manifest(raw, str(path))


def total_samples(manifest: dict) -> int:
    """Number of samples the manifest promises."""
    return int(manifest.get("counts", {}).get("samples", manifest.get("n")))


def expected_shards(manifest: dict) -> dict[str, int]:
    """Shard name -> sample count: shard k holds [k*S, (k+1)*S), the last one may be partial."""
    n, s = total_samples(manifest), int(manifest["shard_size"])
    return {shard_name(k): min(s, n - k * s) for k in range((n + s - 1) // s)}


H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _superblock_flags(path: Path) -> int | None:
    """The HDF5 superblock's file-consistency flags (bit 0: open for writing, bit 2: SWMR writing), or None
    when there is no superblock. The superblock sits at offset 0, 512, 1024, 2048, ... (HDF5 file format
    spec, "Superblock"); flags are 4 bytes at +20 in versions 0-1 and 1 byte at +11 in versions 2-3. A
    writer sets them on open and clears them on a clean close."""
    try:
        with open(path, "rb") as f:
            size, offset = os.fstat(f.fileno()).st_size, 0
            while offset + 24 <= size:
                f.seek(offset)
                head = f.read(24)
                if head[:8] == H5_SIGNATURE:
                    version = head[8]
                    return int.from_bytes(head[20:24], "little") if version < 2 else head[11]
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return None
    return None


def _locked_by_another(path: Path) -> bool:
    """True when another process holds HDF5's lock on `path` for writing (HDF5 locks with flock(2); a
    writer holds it exclusively, so a shared lock cannot be had). False where locks are not available."""
    try:
        import fcntl
    except ImportError:     # Windows: no flock
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:         # e.g. a filesystem without flock
        return False
    finally:
        os.close(fd)


def h5_writer_state(path: Path, label: str | None = None) -> str | None:
    """Why an HDF5 file cannot be trusted as it stands because of a writer, or None: another process has it
    open for writing (its lock is held), or its superblock says it was opened for writing and never closed
    (a writer still running elsewhere, e.g. over NFS, or one that crashed). The message names the file as
    `label` (default: its path) and says what to do."""
    path = Path(path)
    label = label or str(path)
    if _locked_by_another(path):
        return (f"{label}: open for writing by another process (HDF5 file lock held; e.g. a notebook "
                "holding h5py.File(..., 'r+')); close it there, then run this again (if it still fails, the "
                "file was changed: rebuild it by rerunning the same build command)")
    flags = _superblock_flags(path)
    if flags and flags & 0b101:
        return (f"{label}: opened for writing and not closed (HDF5 superblock file-consistency flags "
                f"0x{flags:x}): a writer is still running (perhaps on another machine) or crashed; stop it, "
                "then rebuild the file by rerunning the same build command (`h5clear -s` only hides the "
                "flag: the content may have changed)")
    return None


def _open_h5(path_or_file, name: str | None = None) -> h5py.File:
    try:
        return h5py.File(path_or_file, "r")
    except (OSError, ValueError) as exc:
        state = h5_writer_state(Path(path_or_file)) if isinstance(path_or_file, (str, Path)) else None
        if state:
            raise ShardError(state) from None
        raise ShardError(f"{name or path_or_file}: unreadable HDF5 file, truncated or corrupt ({exc})") \
            from None


def check_h5(name: str, path_or_file, manifest: dict) -> list[str]:
    """Schema and sample-count problems of one h5 file of a dataset (a path or an open binary file object)."""
    if name != SOURCES and not SHARD_PATTERN.match(name):
        return []
    try:
        f = _open_h5(path_or_file, name)
    except ShardError as exc:
        return [str(exc)]
    problems: list[str] = []
    with f:
        try:
            if f.attrs.get("schema") != SCHEMA_VERSION:
                return [f"{name}: schema {f.attrs.get('schema')}, expected {SCHEMA_VERSION}"]
            wanted = SOURCE_DATASETS if name == SOURCES else SHARD_DATASETS
            missing = [d for d in wanted if d not in f]
            if missing:
                return [f"{name}: missing datasets {', '.join(missing)}"]
            lengths = {f[d].shape[0] for d in wanted}
            if len(lengths) != 1:
                problems.append(f"{name}: datasets disagree on the number of rows {sorted(lengths)}")
            rows = f[wanted[0]].shape[0]
            listed = manifest["files"].get(name, {}).get("samples")
            if listed is not None and listed != rows:
                problems.append(f"{name}: holds {rows} samples, manifest says {listed}")
            if name != SOURCES:
                k = int(SHARD_PATTERN.match(name).group(1))
                want = expected_shards(manifest).get(name)
                if int(f.attrs.get("count", -1)) != rows:
                    problems.append(f"{name}: count attribute {f.attrs.get('count')} != {rows} rows")
                if want is not None and rows != want:
                    problems.append(f"{name}: holds {rows} samples, expected {want} from the manifest")
                if int(f.attrs.get("first_index", -1)) != k * int(manifest["shard_size"]):
                    problems.append(f"{name}: first_index {f.attrs.get('first_index')} != "
                                    f"{k * int(manifest['shard_size'])}")
                json.loads(f.attrs["strategies"])
        except (OSError, KeyError, ValueError, TypeError) as exc:
            problems.append(f"{name}: unreadable ({exc})")
    return problems


def layout_problems(manifest: dict, names: set[str]) -> list[str]:
    """Shards the manifest should list but does not, shard files not in the manifest, and sample totals."""
    listed, want = manifest["files"], expected_shards(manifest)
    problems = [f"{name}: not listed in the manifest" for name in sorted(names - set(listed))
                if name == SOURCES or SHARD_PATTERN.match(name)]
    problems += [f"{name}: expected by the manifest's sample count but not listed" for name in want
                 if name not in listed]
    problems += [f"{name}: listed but beyond the manifest's {total_samples(manifest)} samples"
                 for name in listed if SHARD_PATTERN.match(name) and name not in want]
    if SOURCES not in listed:
        problems.append(f"{SOURCES}: not listed in the manifest")
    counted = [e.get("samples") for n, e in listed.items() if SHARD_PATTERN.match(n)]
    if None not in counted and sum(counted) != total_samples(manifest):
        problems.append(f"{MANIFEST}: shards hold {sum(counted)} samples, "
                        f"counts say {total_samples(manifest)}")
    return problems


def verify_dataset(directory: Path, checksums: bool = True,
                   on_bytes: Callable[[int], object] | None = None) -> list[str]:
    """Every problem of a generated dataset directory ([] when it is complete and intact)."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ShardError as exc:
        return [str(exc)]
    present = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    problems = layout_problems(manifest, present)
    for name, entry in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        state = h5_writer_state(path, name) if name.endswith(".h5") else None
        if state:
            problems.append(state)
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{name}: size {size} bytes, manifest says {entry['size']} "
                            "(truncated or replaced)")
            continue
        if checksums and sha256_file(path, on_bytes) != entry["sha256"]:
            problems.append(f"{name}: sha256 does not match the manifest (corrupt or tampered with)")
            continue
        if name.endswith(".h5"):
            problems += check_h5(name, path, manifest)
    return problems


def shard_complete(path: Path, expected_sha: str | None = None) -> bool:
    """True when `path` is a readable schema-v1 shard whose rows match its count (and sha256, if given)."""
    path = Path(path)
    if not path.is_file() or (expected_sha is not None and sha256_file(path) != expected_sha):
        return False
    try:
        with h5py.File(path, "r") as f:
            rows = {f[d].shape[0] for d in SHARD_DATASETS}
            return f.attrs.get("schema") == SCHEMA_VERSION and rows == {int(f.attrs["count"])}
    except (OSError, KeyError, ValueError):
        return False


@dataclass
class Sample:
    """One training sample: anomaly image, mask (u8 0/255); the source's image, JND (u8) and edges (u8)."""

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
            f = self._files[name] = _open_h5(self.directory / name)
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
                    "bbox": tuple(int(v) for v in table["bbox"][row])}
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
            except (OSError, KeyError, ValueError) as exc:
                raise ShardError(f"{self.directory / name}: cannot read sample metadata ({exc})") from None
        return self._meta[name]

    def normal(self, source: int) -> Sample:
        """An unaltered source as a sample: anomaly == normal, mask all zeros, kind "good"."""
        normal, jnd, edge = self._source_views(int(source))
        meta = {"index": -1, "source": int(source), "kind": "good", "strategy": "none", "seed": 0,
                "bbox": (0, 0, 0, 0)}
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

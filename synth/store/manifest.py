"""`manifest.json` and verification: what a generated dataset holds and whether its files still match it.

The manifest lists every file with its sha256 and size; `verify_dataset` checks files, layout and each HDF5
file's schema against it, so a rerun or a receiver never trusts a file it did not write or verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from synth import __version__
from synth.errors import ShardError
from synth.store.atomic import atomic_path, h5_writer_state, sha256_file
from synth.store.schema import (
    GENERATOR,
    MANIFEST,
    SAFE_NAME,
    SCHEMA_VERSION,
    SHARD_DATASETS,
    SHARD_PATTERN,
    SOURCE_DATASETS,
    SOURCES,
    shard_name,
)


def _file_entry(path: Path, known: dict | None = None, exact: bool = False) -> dict:
    size = path.stat().st_size
    if exact and (not known or known.get("size") != size):
        raise ShardError(f"{path}: changed after it was written or verified (size {size} bytes, "
                         f"{known.get('size') if known else 'nothing'} recorded); not sealing it in the manifest")
    sha = known["sha256"] if known and known.get("size") == size else sha256_file(path)
    entry: dict[str, Any] = {"sha256": sha, "size": size}
    if path.suffix == ".h5":
        with open_h5(path) as f:
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


def open_h5(path_or_file, name: str | None = None) -> h5py.File:
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
        f = open_h5(path_or_file, name)
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

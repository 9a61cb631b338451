"""Sharing generated datasets: pack into a plain tar, verify (directory or tar), unpack safely into a
content-keyed cache, inspect, and export to an MVTec-AD folder layout.

Archives are untrusted: only regular files named `<prefix>/<file listed in the manifest>` are accepted,
nothing is executed or unpickled, and an archive is unpacked into a temporary folder, checked against every
sha256 of its manifest and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import cv2
import h5py
import numpy as np

from synth import __version__
from synth.console import progress
from synth.errors import ArchiveError, ShardError
from synth.images import save_image
from synth.shards import (
    BLOCK,
    GENERATOR,
    MANIFEST,
    SAFE_NAME,
    SHARD_PATTERN,
    SOURCES,
    GeneratedDataset,
    atomic_path,
    check_h5,
    layout_problems,
    parse_manifest,
    read_manifest,
    total_samples,
    verify_dataset,
)

CARD = "DATASET.md"
MARKER = ".complete"
MAX_MANIFEST_BYTES = 64 << 20
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


def plain_name(value: Any) -> str:
    """`value` as a single safe path component (letters, digits, `._-`; no leading dot), e.g. for folders."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).lstrip(".-") or "_"


def archive_prefix(manifest: dict) -> str:
    """Folder name of the members in an archive: `<dataset>-<category>`."""
    return plain_name(f"{manifest.get('dataset', 'dataset')}-{manifest.get('category', 'category')}")


def _counts_lines(counts: dict) -> list[str]:
    return [f"| {k} | {v} |" for k, v in sorted(counts.items())] or ["| - | 0 |"]


def dataset_card(manifest: dict) -> str:
    """DATASET.md: what the dataset was built from and how, generated from the manifest."""
    m, counts = manifest, manifest.get("counts", {})
    lines = [f"# {m.get('dataset')} / {m.get('category')}: LogicAL generated anomalies", "",
             f"- built from: `{m.get('dataset')}` category `{m.get('category')}`",
             f"- licence (as given by the source dataset): {m.get('licence', 'unknown')}",
             f"- tool: {m.get('tool', 'logical')} {m.get('version', '?')}, schema {m.get('schema')}",
             f"- seed: {m.get('seed')}",
             f"- samples: {total_samples(m)} in shards of {m.get('shard_size')}", ""]
    for title, key, column in (("Samples per kind", "by_kind", "kind"),
                               ("Samples per strategy", "by_strategy", "strategy"),
                               ("Rejected plans", "rejections", "reason")):
        lines += [f"## {title}", "", f"| {column} | count |", "|---|---|",
                  *_counts_lines(counts.get(key, {})), ""]
    config = json.dumps(m.get("config", {}), indent=2, sort_keys=True)
    lines += ["## Build configuration", "", "```json", config, "```", "", "## Files", "",
              "| file | bytes | sha256 |", "|---|---|---|",
              *[f"| {n} | {e['size']} | `{e['sha256']}` |" for n, e in m["files"].items()], "",
              "Check with `logical-synth verify <archive>`; read with plain h5py (see the README).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- pack


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _copy(src: BinaryIO, dst: BinaryIO | None, size: int, on_bytes: Callable[[int], object]) -> str | None:
    """Copy exactly `size` bytes (dst None: only hash); the sha256, or None when src ends early."""
    digest, buf = hashlib.sha256(), bytearray(BLOCK)
    view, left = memoryview(buf), size
    while left:
        n = src.readinto(view[: min(BLOCK, left)])
        if not n:
            return None
        digest.update(view[:n])
        if dst is not None:
            dst.write(view[:n])
        left -= n
        on_bytes(n)
    return digest.hexdigest()


def pack_dataset(directory: Path, out: Path | None = None, with_generator: bool = False) -> Path:
    """Write a plain tar: manifest.json first, DATASET.md, sources, shards (+ generator.pt when asked)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems = verify_dataset(directory, checksums=False)  # checksums are checked while copying below
    if problems:
        raise ArchiveError(f"{directory}: refusing to pack a dataset with problems:\n  "
                           + "\n  ".join(problems))
    files = manifest["files"]
    if with_generator and GENERATOR not in files:
        raise ArchiveError(f"{directory}: --with-generator given but the manifest lists no {GENERATOR}")
    names = [SOURCES, *sorted(n for n in files if SHARD_PATTERN.match(n))]
    names += [GENERATOR] if with_generator else []
    packed = {**manifest, "files": {n: files[n] for n in names}}
    omitted = {n: e for n, e in files.items() if n not in packed["files"]}
    if omitted:
        packed["omitted_files"] = omitted
    prefix = archive_prefix(manifest)
    out = Path(out) if out is not None else Path(f"{prefix}.tar")
    out.parent.mkdir(parents=True, exist_ok=True)
    head = [(MANIFEST, (json.dumps(packed, indent=2) + "\n").encode()), (CARD, dataset_card(packed).encode())]
    mtime = int((directory / MANIFEST).stat().st_mtime)
    bar = progress(None, f"pack {out.name}", total=sum(files[n]["size"] for n in names), unit="B",
                   unit_scale=True)
    with bar, atomic_path(out) as tmp, open(tmp, "wb") as f:
        for name, data in head:
            f.write(_tar_header(f"{prefix}/{name}", len(data), mtime) + data + b"\0" * (-len(data) % 512))
        for name in names:
            size = files[name]["size"]
            f.write(_tar_header(f"{prefix}/{name}", size, mtime))
            with open(directory / name, "rb", buffering=0) as src:
                digest = _copy(src, f, size, bar.update)
            if digest != files[name]["sha256"]:
                raise ArchiveError(f"{directory / name}: does not match its manifest checksum; not packed")
            f.write(b"\0" * (-size % 512))
        f.write(b"\0" * 1024)
        f.write(b"\0" * (-f.tell() % tarfile.RECORDSIZE))
    return out


# ------------------------------------------------------------------------------------- reading a tar


@dataclass
class TarIndex:
    """An archive whose members passed the safety checks: its manifest and its members by file name."""

    path: Path
    tar: tarfile.TarFile
    prefix: str
    manifest: dict
    manifest_raw: bytes
    members: dict[str, tarfile.TarInfo]
    problems: list[str] = field(default_factory=list)


def _unsafe(m: tarfile.TarInfo) -> str | None:
    """Why a member may not be unpacked, or None."""
    name = m.name
    if m.issym() or m.islnk():
        kind = "symbolic" if m.issym() else "hard"
        return f"is a {kind} link to {m.linkname!r}; only regular files are allowed"
    if m.ischr() or m.isblk() or m.isfifo():
        return "is a device file or FIFO; only regular files are allowed"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "has a '..' component (would escape the target folder)"
    if not (m.isdir() or m.type in _REGULAR):
        return f"has an unsupported type {m.type!r}; only regular files are allowed"
    parts = name.rstrip("/").split("/")
    if "\\" in name or len(parts) > 2 or not all(SAFE_NAME.match(p) for p in parts):
        return "is not of the form <dataset>-<category>/<file>"
    return None


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[TarIndex]:
    """Read the headers of a generated-dataset tar; ArchiveError: unsafe, truncated or foreign archive."""
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path}: not a readable plain tar archive ({exc})") from None
    with tar:
        try:
            members = list(tar)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{path}: truncated or corrupt tar archive ({exc})") from None
        bad = [f"member {m.name!r} {why}" for m in members if (why := _unsafe(m))]
        if bad:
            raise ArchiveError(f"{path}: unsafe archive, refused:\n  " + "\n  ".join(bad))
        files = [m for m in members if not m.isdir()]
        if not files or files[0].name.count("/") != 1 or PurePosixPath(files[0].name).name != MANIFEST:
            first = files[0].name if files else "nothing"
            raise ArchiveError(f"{path}: the first member must be <dataset>-<category>/{MANIFEST}, "
                               f"found {first}")
        prefix = files[0].name.split("/")[0]
        if files[0].size > MAX_MANIFEST_BYTES:
            raise ArchiveError(f"{path}: {files[0].name} is implausibly large ({files[0].size} bytes)")
        raw = tar.extractfile(files[0]).read()
        manifest = parse_manifest(raw, f"{path}:{files[0].name}")
        index = TarIndex(path, tar, prefix, manifest, raw, {})
        size = path.stat().st_size
        allowed = set(manifest["files"]) | {CARD}
        for m in files[1:]:
            folder, _, name = m.name.partition("/")
            if folder != prefix or not name:
                index.problems.append(f"member {m.name!r} is outside the archive's folder {prefix}/; refused")
            elif name not in allowed:
                index.problems.append(f"member {m.name!r} is not listed in the manifest; refused")
            elif name in index.members:
                index.problems.append(f"member {m.name!r} appears twice; refused")
            elif m.offset_data + m.size > size:
                index.problems.append(f"{name}: truncated in the archive")
            else:
                index.members[name] = m
        for m in members:
            if m.isdir() and m.name.rstrip("/") != prefix:
                index.problems.append(f"member {m.name!r} is a folder other than {prefix}/; refused")
        yield index


# --------------------------------------------------------------------------------------------- verify


@dataclass
class Verified:
    """The outcome of a verification: every problem found, and what was checked."""

    samples: int
    files: int
    bytes: int
    problems: list[str]


def _bytes_bar(desc: str, total: int):
    return progress(None, desc, total=total, unit="B", unit_scale=True)


def verify_archive(path: Path) -> Verified:
    """Check a tar without unpacking it: hashes member streams, reads h5 schemas and counts inside the tar."""
    with open_archive(path) as idx, open(path, "rb", buffering=0) as raw:
        files = idx.manifest["files"]
        problems = list(idx.problems) + layout_problems(idx.manifest, set(idx.members))
        problems += [f"{n}: missing from the archive" for n in files if n not in idx.members]
        todo = sorted((m.offset_data, n, m) for n, m in idx.members.items() if n in files)
        with _bytes_bar(f"verify {Path(path).name}", sum(m.size for _, _, m in todo)) as bar:
            for offset, name, m in todo:
                if m.size != files[name]["size"]:
                    problems.append(f"{name}: size {m.size} bytes, manifest says {files[name]['size']}")
                    continue
                raw.seek(offset)
                digest = _copy(raw, None, m.size, bar.update)
                if digest != files[name]["sha256"]:
                    problems.append(f"{name}: sha256 does not match the manifest (corrupt or tampered with)")
                elif name.endswith(".h5"):
                    problems += check_h5(name, idx.tar.extractfile(m), idx.manifest)
        size = sum(e["size"] for e in files.values())
        return Verified(total_samples(idx.manifest), len(files), size, problems)


def verify_path(path: Path) -> Verified:
    """Verify a generated dataset directory or a packed .tar; every problem is listed."""
    path = Path(path)
    if path.is_dir():
        try:
            manifest = read_manifest(path)
        except ShardError as exc:
            return Verified(0, 0, 0, [str(exc)])
        size = sum(e["size"] for e in manifest["files"].values())
        with _bytes_bar(f"verify {path.name}", size) as bar:
            problems = verify_dataset(path, on_bytes=bar.update)
        return Verified(total_samples(manifest), len(manifest["files"]), size, problems)
    if path.is_file():
        return verify_archive(path)
    raise ArchiveError(f"{path}: no such file or directory")


# --------------------------------------------------------------------------------------------- unpack


def cache_root() -> Path:
    """Where archives are unpacked: $LOGICAL_CACHE, else ~/.cache/logical."""
    return Path(os.environ.get("LOGICAL_CACHE") or Path.home() / ".cache" / "logical")


def _cached(target: Path, key: str) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
        return marker.get("manifest_sha256") == key and \
            hashlib.sha256((target / MANIFEST).read_bytes()).hexdigest() == key
    except (OSError, ValueError, AttributeError):
        return False


def _write_new(path: Path) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")


def _unpack(idx: TarIndex, target: Path) -> None:
    """Unpack every member into the (new, empty) target and check each against the manifest."""
    if idx.problems:
        raise ArchiveError(f"{idx.path}: refused:\n  " + "\n  ".join(idx.problems))
    files = idx.manifest["files"]
    missing = [n for n in files if n not in idx.members]
    if missing:
        raise ArchiveError(f"{idx.path}: incomplete archive, missing {', '.join(missing)}")
    with _write_new(target / MANIFEST) as f:
        f.write(idx.manifest_raw)
    todo = sorted(idx.members.items(), key=lambda item: item[1].offset_data)
    with open(idx.path, "rb", buffering=0) as raw, _bytes_bar(f"unpack {idx.path.name}",
                                                              sum(m.size for _, m in todo)) as bar:
        for name, m in todo:
            raw.seek(m.offset_data)
            with _write_new(target / name) as out:
                digest = _copy(raw, out, m.size, bar.update)
                out.flush()
                os.fsync(out.fileno())
            if name in files and (m.size != files[name]["size"] or digest != files[name]["sha256"]):
                raise ArchiveError(f"{idx.path}: member {idx.prefix}/{name} does not match its manifest "
                                   "checksum (corrupt or tampered with); nothing was unpacked")
    problems = verify_dataset(target, checksums=False)
    if problems:
        raise ArchiveError(f"{idx.path}: unpacked dataset is not valid:\n  " + "\n  ".join(problems))


def open_dataset_path(path: Path, cache_dir: Path | None = None) -> Path:
    """A directory GeneratedDataset can read: a dataset directory as is, or a tar unpacked (once, verified)
    into `<cache_dir or cache_root()>/<sha256 of its manifest>`."""
    path = Path(path)
    if path.is_dir():
        read_manifest(path)
        return path
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file or directory")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    with open_archive(path) as idx:
        key = hashlib.sha256(idx.manifest_raw).hexdigest()
        target = root / key
        if _cached(target, key):
            return target
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=root))
        except OSError as exc:
            raise ArchiveError(f"{root}: cannot create the unpack folder ({exc.strerror or exc})") from None
        try:
            _unpack(idx, tmp)
            (tmp / MARKER).write_text(json.dumps({"manifest_sha256": key, "archive": str(path.resolve())}))
            if target.exists() and not _cached(target, key):
                shutil.rmtree(target)  # a stale or damaged copy under our own content key
            try:
                os.rename(tmp, target)
            except OSError:
                if not _cached(target, key):  # lost a race to a writer that did not finish: report it
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:  # disk full, permissions: nothing half-used is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArchiveError(f"{path}: cannot unpack into {root} ({exc.strerror or exc})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# -------------------------------------------------------------------------------------------- inspect


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


def inspect_path(path: Path, max_masks: int = 2000) -> dict:
    """Summary of a generated dataset (directory or archive): counts, mask areas, size, config, rejections."""
    with _h5_opener(path) as (manifest, opener):
        files = manifest["files"]
        with _h5(opener(SOURCES), SOURCES) as f:
            n_sources, height, width = f["image"].shape[:3]
        n, shard_size = total_samples(manifest), int(manifest["shard_size"])
        picks = np.unique(np.linspace(0, n - 1, min(n, max_masks)).round().astype(int)) if n else []
        areas = []
        for k in sorted({int(i) // shard_size for i in picks}):
            name = f"shard-{k:05d}.h5"
            with _h5(opener(name), name) as f:
                for i in (int(i) for i in picks if int(i) // shard_size == k):
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
            "generator": GENERATOR in files, "reader_version": __version__}


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


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((18, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def _grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], tile: int = 160) -> np.ndarray:
    """Contact sheet: one row per sample, normal | anomaly | mask overlay, labelled (private stand-in)."""
    out = []
    for normal, anomaly, mask, text in rows:
        scale = min(1.0, tile / max(normal.shape[:2]))
        size = (max(1, round(normal.shape[1] * scale)), max(1, round(normal.shape[0] * scale)))
        fit = [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (normal, anomaly)]
        m = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) > 0
        overlay = fit[1].copy()
        overlay[m] = (0.5 * overlay[m] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        gap = np.full((size[1], 4, 3), 255, np.uint8)
        out.append(_label(np.concatenate([fit[0], gap, fit[1], gap, overlay], axis=1), text))
    width = max(r.shape[1] for r in out)
    out = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in out]
    return np.concatenate(out, axis=0)


def write_sheet(path: Path, out: Path, n: int = 16, cache_dir: Path | None = None) -> Path:
    """PNG contact sheet of n samples spread evenly over the dataset (directory or archive)."""
    ds = GeneratedDataset(open_dataset_path(path, cache_dir), verify=False)
    if len(ds) == 0:
        raise ShardError(f"{path}: the dataset holds no samples")
    rows = []
    for i in np.unique(np.linspace(0, len(ds) - 1, max(1, min(n, len(ds)))).round().astype(int)):
        s = ds[int(i)]
        label = f"#{s.meta['index']} {s.meta['kind']}/{s.meta['strategy']}"
        rows.append((s.normal, s.anomaly, s.mask, label))
    ds.close()
    save_image(out, _grid(rows))
    return Path(out)


# --------------------------------------------------------------------------------------------- export


def export_mvtec(path: Path, out: Path, cache_dir: Path | None = None) -> Path:
    """MVTec-AD layout under out/<category>: train/good (sources), test/<strategy>/<id>.png,
    ground_truth/<strategy>/<id>_mask.png (0/255); written to a tmp folder, then renamed."""
    path, out = Path(path), Path(out)
    ds = GeneratedDataset(open_dataset_path(path, cache_dir), verify=path.is_dir())
    category = plain_name(ds.manifest.get("category"))
    final = out / category
    if final.exists():
        raise ArchiveError(f"{final}: already exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{category}-", suffix=".tmp", dir=out))
    try:
        width = max(3, len(str(ds.source_count() - 1)))
        for s in progress(range(ds.source_count()), "export train/good"):
            save_image(tmp / "train" / "good" / f"{s:0{width}d}.png", ds.source(s)["image"])
        width = max(3, len(str(len(ds) - 1)))
        for i in progress(range(len(ds)), "export test", total=len(ds)):
            sample = ds[i]
            strategy = plain_name(sample.meta["strategy"])
            save_image(tmp / "test" / strategy / f"{i:0{width}d}.png", sample.anomaly)
            save_image(tmp / "ground_truth" / strategy / f"{i:0{width}d}_mask.png", sample.mask)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        ds.close()
    return final


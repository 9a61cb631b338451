"""Sharing generated datasets: pack into a plain tar, verify (directory or tar), and unpack safely into a
content-keyed cache (`open_dataset_path`). Summaries and contact sheets: synth.store.inspect; folder export:
synth.store.export.

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

from synth.console import progress
from synth.errors import ArchiveError, ShardError
from synth.lock import file_lock
from synth.store.atomic import BLOCK, atomic_path
from synth.store.manifest import check_h5, layout_problems, parse_manifest, read_manifest, total_samples, verify_dataset
from synth.store.schema import GENERATOR, MANIFEST, SAFE_NAME, SHARD_PATTERN, SOURCES

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
    with file_lock(out), bar, atomic_path(out) as tmp, open(tmp, "wb") as f:
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


# --------------------------------------------------------------------------------------------- identity


def archive_identity(path: Path) -> str:
    """The identity of a generated dataset: sha256 (64 hex digits) of the manifest.json it carries (the tar's
    first member, or the directory's file). The manifest lists every file's sha256, so this one value pins
    every byte; unlike `verify`, which checks an archive against its own manifest, it tells a receiver
    whether this is the archive the sender published. (`pack` writes its own manifest: a directory and its
    archive have different identities.) ArchiveError / ShardError when there is none to read."""
    path = Path(path)
    if path.is_dir():
        try:
            return hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()
        except OSError:
            raise ShardError(f"{path}: no {MANIFEST}; an identity belongs to one generated dataset "
                             "(a .tar from pack, or its folder)") from None
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file or directory")
    with open_archive(path) as idx:
        return hashlib.sha256(idx.manifest_raw).hexdigest()


def check_identity(path: Path, expect: str) -> str:
    """The identity of `path` when it is `expect` (the value the sender published); ArchiveError naming both
    values when it differs, or when `expect` is not a sha256."""
    want = expect.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", want):
        raise ArchiveError(f"--expect {expect}: not a sha256 identity (64 hexadecimal digits, as pack prints)")
    got = archive_identity(path)
    if got != want:
        raise ArchiveError(f"{path}: identity {got} is not the expected {want}: this is not the archive that "
                           "was published (re-packed, altered or another one); refused. Get the archive again "
                           "from its source, or ask the sender for its identity (printed by pack and inspect)")
    return got


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

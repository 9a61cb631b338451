"""Atomic files: a file is either complete under its final name or absent (design.md, safety).

Writers fill `<name>.tmp`, fsync it and its directory, then rename; `h5_writer_state` tells whether another
process still holds an HDF5 file open for writing. Also the one sha256 helper every stage uses.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
BLOCK = 4 << 20


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


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """fsync tmp, rename it to its final name, fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield `<path>.tmp` to write; on success publish it as `path`, on error remove it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        publish(tmp, path)
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


def discard_tmp(f: h5py.File | None, tmp: Path) -> None:
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
def h5_tmp(path: Path) -> Iterator[h5py.File]:
    """An h5py file open for writing at `<path>.tmp`; on success published as `path`, on error discarded.

    Flushed before it is closed, so running out of disk fails in the flush, where the file can still be
    discarded safely (see `discard_tmp`).
    """
    with atomic_path(path) as tmp:
        f = h5py.File(tmp, "w")
        try:
            yield f
            f.flush()
        except BaseException:
            discard_tmp(f, tmp)
            raise
        f.close()


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

"""One writer per folder: every command that writes a folder (or one file, e.g. an archive) holds an exclusive
lock on it for as long as it writes, so two jobs never clobber each other's output (issue 20, item 3).

The lock is the `filelock` library's (an OS lock, `flock` on Unix, released by the kernel when its process
dies); beside it a small JSON names the holder (pid, host, command line, start time) so the second writer's
error can say who holds it and what to do. A process that died while writing leaves its JSON but no OS
lock: the next writer takes the lock over and says whose it was (pid gone on this host, or another host's).
Plumbing: imports nothing of the stages, so every stage may use it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from synth.console import say
from synth.errors import FolderBusyError

LOCK = ".logical.lock"
_READ_TRIES = 20   # the holder writes its JSON right after taking the lock: wait up to ~1 s to read it


def lock_paths(target: Path, folder: bool = True) -> tuple[Path, Path]:
    """(lock file, holder JSON) of a folder (inside it) or of a file (beside it, named after it)."""
    target = Path(target)
    lock = target / LOCK if folder else target.parent / f".{target.name}{LOCK}"
    return lock, lock.with_name(lock.name + ".json")


@contextmanager
def folder_lock(folder: Path, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive write lock of `folder` (created if missing) for the `with` block; yields the folder.

    FolderBusyError naming the folder, the holder and what to do when another process holds it; with
    `wait`, block until it is free instead (for work whose second comer only has to wait, e.g. the toybox).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _held(folder, *lock_paths(folder), wait):
        yield folder


@contextmanager
def file_lock(path: Path, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive write lock of one file (an archive, a generator checkpoint) for the `with` block;
    the lock lives beside it (`.<name>.logical.lock`), its folder is created if missing. Errors as
    `folder_lock`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _held(path, *lock_paths(path, folder=False), wait):
        yield path


def holder_info() -> dict:
    """This process as a lock holder: pid, host, command line and start time (UTC, ISO 8601)."""
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read_holder(info: Path) -> dict | None:
    try:
        data = json.loads(info.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, owned by someone else
        return True
    return True


def _dead_here(holder: dict | None) -> bool:
    """The holder ran on this host and its process is gone."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    try:
        return not _alive(int(holder["pid"]))
    except (KeyError, TypeError, ValueError):
        return False


def describe(holder: dict | None) -> str:
    """One phrase naming a holder for messages."""
    if not holder:
        return "an unknown process (it wrote no holder information)"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, "
            f"running `{holder.get('command')}`")


def _busy(target: Path, lock: Path, holder: dict | None) -> FolderBusyError:
    return FolderBusyError(
        f"{target}: another command is writing here: {describe(holder)}. Only one command may write it at a "
        f"time: wait for that one to finish (or stop it), or write elsewhere (another --out). If that "
        f"process is gone for good (e.g. another machine crashed), delete {lock} and retry.")


def _acquire(target: Path, lock: Path, info: Path, wait: bool) -> FileLock:
    """The OS lock decides: a dead holder's lock is free (the kernel released it); a held one is busy."""
    fl = FileLock(lock, timeout=-1 if wait else 0)
    try:
        fl.acquire()
        return fl
    except Timeout:
        pass
    holder = None
    for _ in range(_READ_TRIES):
        holder = _read_holder(info)
        if holder:
            break
        time.sleep(0.05)
    raise _busy(target, lock, holder)


@contextmanager
def _held(target: Path, lock: Path, info: Path, wait: bool) -> Iterator[None]:
    fl = _acquire(target, lock, info, wait)
    try:
        left = _read_holder(info)
        if left and left.get("pid") != os.getpid():
            how = "which is no longer running" if _dead_here(left) else "which did not release it"
            say(f"note: {target}: took over the write lock left by {describe(left)}, {how}")
        info.write_text(json.dumps(holder_info()) + "\n")
        yield
    finally:
        try:
            info.unlink(missing_ok=True)
        finally:
            fl.release()

"""Command-line plumbing shared by `logical-synth` and `logical-train`: clean errors and progress reports."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

import click

from synth.errors import LogicalError

try:
    from tqdm import tqdm
except ImportError:  # a bare GPU image set up with `pip install --no-deps`: same code, no bars
    tqdm = None

T = TypeVar("T")

LINE_FRACTION = 0.1       # without a terminal: a progress line every 10% of the work ...
LINE_SECONDS = 30.0       # ... or every 30 s, whichever comes first,
LINE_MIN_SECONDS = 1.0    # but not more often than once a second (a quick loop gets only its final line)


# OSErrors that are the user's to fix (a path under a file, no permission, a full or read-only disk): shown
# as `Error: <file>: <reason>`, never a traceback.
USER_ERRNOS = {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ENOENT,
               errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.EDQUOT}


class Group(click.Group):
    """A click group that prints a LogicalError, or an OSError the user can fix (USER_ERRNOS), as
    `Error: message` (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LogicalError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if exc.errno not in USER_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.EEXIST, errno.ENOTDIR) and exc.filename and os.path.isfile(exc.filename):
                reason = "is a file, where a folder is needed"
            raise click.ClickException(f"{where}{reason} (check the paths given and their permissions)") \
                from None


def duration(seconds: float) -> str:
    """A duration as `M:SS`, or `H:MM:SS` from an hour: how every progress line and ETA reads."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LineProgress:
    """Progress for logs (stderr redirected to a file: nohup, cluster jobs, CI): one plain line every
    `LINE_FRACTION` of `total` or `LINE_SECONDS`, whichever comes first (at most one a second), and one at
    the end, e.g.

        fit-generator: 120/600 (20%), 3.10 it/s, elapsed 0:38, ETA 2:35, g_gan=0.310 d_real=0.250

    The same calls as a tqdm bar (iterate, `update`, `set_postfix`, `close`), so every loop gets it. On the
    real clock a background thread also writes a line when a step outlasts the period (a long shard), so a
    log never stays silent for longer than `every_seconds`.
    """

    def __init__(self, items: Iterable[T] | None, desc: str, total: int | None = None, initial: int = 0,
                 stream: TextIO | None = None, unit: str = "it", unit_scale: bool = False,
                 every_fraction: float = LINE_FRACTION, every_seconds: float = LINE_SECONDS,
                 clock=time.monotonic, **_ignored) -> None:
        if total is None and items is not None and hasattr(items, "__len__"):
            total = len(items)
        self.items, self.desc, self.total, self.n = items, desc, total, int(initial)
        self.unit, self.unit_scale = unit, unit_scale
        self.stream = stream if stream is not None else sys.stderr
        self.every_fraction, self.every_seconds, self._clock = every_fraction, every_seconds, clock
        self._initial, self._start = self.n, clock()
        self._last_n, self._last_t = self.n, self._start
        self._postfix = ""
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if clock is time.monotonic and every_seconds > 0:
            # the thread holds only a weak reference: a bar dropped without close() stops beating
            threading.Thread(target=_beat, args=(weakref.ref(self), self._stop, every_seconds / 4),
                             daemon=True, name=f"progress {desc}").start()

    def _heartbeat(self) -> None:
        with self._lock:
            now = self._clock()
            if not self._closed and now - self._last_t >= self.every_seconds:
                self._emit(now)

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.items:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        """Show these values (e.g. the current loss) at the end of every line."""
        values = {**(ordered_dict or {}), **kwargs}
        self._postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def _due(self, now: float) -> bool:
        if now - self._last_t >= self.every_seconds:
            return True
        step = max(1.0, self.every_fraction * self.total) if self.total else None
        return step is not None and self.n - self._last_n >= step and now - self._last_t >= LINE_MIN_SECONDS

    def update(self, n: int = 1) -> None:
        """Count `n` more units of work done; writes a line when one is due."""
        self.n += n
        now = self._clock()
        if self._due(now) and not (self.total and self.n >= self.total):   # the last line comes from close()
            self._write(now)

    def _amount(self, value: float) -> str:
        if not self.unit_scale:
            return f"{value:.3g}" if isinstance(value, float) else str(value)
        for prefix in ("", "k", "M", "G", "T"):
            if abs(value) < 1000:
                return f"{value:.1f}{prefix}"
            value /= 1000
        return f"{value:.1f}P"

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be written now."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 0.0)
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self._amount(self.n)}"]
        if self.total:
            parts[0] += f"/{self._amount(self.total)} ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{self._amount(rate)} {self.unit}/s")
        parts.append(f"elapsed {duration(elapsed)}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {duration((self.total - self.n) / rate)}")
        text = ", ".join(parts)
        return f"{text}, {self._postfix}" if self._postfix else text

    def _write(self, now: float) -> None:
        with self._lock:
            self._emit(now)

    def _emit(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self._last_n, self._last_t = self.n, now

    def close(self) -> None:
        """Write the final line (once), unless nothing was done since the last one."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self.n != self._last_n or self.n == self._initial:
            self._write(self._clock())


def _beat(ref: weakref.ref, stop: threading.Event, period: float) -> None:
    """LineProgress's background writer: a line whenever the loop has been silent for a whole period."""
    while not stop.wait(period):
        bar = ref()
        if bar is None:
            return
        try:
            bar._heartbeat()
        except (OSError, ValueError):      # the stream went away (interpreter shutting down)
            return
        del bar


def _interactive(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:          # a closed stream
        return False


def progress(items: Iterable[T] | None, desc: str, total: int | None = None, **kwargs):
    """Progress of a long loop on stderr: a tqdm bar on a terminal; otherwise (a log file, CI) a plain
    `LineProgress` line every 10% or 30 s with count, rate, ETA and the values given to `set_postfix`.

    `disable=True` silences it; LOGICAL_PROGRESS=1 forces the bar, LOGICAL_PROGRESS=0 silences it.
    Accepts tqdm's keyword arguments (`initial`, `unit`, `unit_scale`, ...). Without tqdm (a bare GPU image set up
    with `pip install --no-deps`) the plain lines are used on a terminal too.
    """
    forced = os.environ.get("LOGICAL_PROGRESS")
    disable = kwargs.pop("disable", None) is True or forced == "0"
    stream = sys.stderr
    if disable:
        if tqdm is None:
            return QuietBar(items)
        return tqdm(items, desc=desc, total=total, file=stream, disable=True, **kwargs)
    if tqdm is not None and (forced == "1" or _interactive(stream)):
        return tqdm(items, desc=desc, total=total, file=stream, dynamic_ncols=True, leave=False, **kwargs)
    return LineProgress(items, desc, total=total, stream=stream, **kwargs)


class QuietBar:
    """What a disabled `progress` returns when tqdm is not installed: iterates `items`; update, set_postfix,
    close and `with` do nothing."""

    def __init__(self, items: Iterable[T] | None) -> None:
        self.items = items

    def __iter__(self) -> Iterator[T]:
        return iter(self.items if self.items is not None else ())

    def __enter__(self) -> QuietBar:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: float = 1) -> None:
        return None

    def set_postfix(self, *args, **kwargs) -> None:
        return None

    def close(self) -> None:
        return None


def say(message: str) -> None:
    """One line of status for the user, on stderr so stdout stays machine-readable."""
    click.echo(message, err=True)

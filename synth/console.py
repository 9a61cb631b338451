"""Command-line plumbing shared by `logical-synth` and `logical-train`: clean errors and progress bars."""

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

from synth.errors import LogicalError

try:
    from tqdm import tqdm
except ImportError:  # a bare GPU image set up with `pip install --no-deps`: same code, no bars
    tqdm = None

T = TypeVar("T")


class Group(click.Group):
    """A click group that prints a LogicalError as `Error: message` (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LogicalError as exc:
            raise click.ClickException(str(exc)) from None


def progress(items: Iterable[T], desc: str, total: int | None = None, **kwargs) -> Iterator[T]:
    """A tqdm bar on stderr (quiet when stderr is not a terminal unless LOGICAL_PROGRESS=1)."""
    kwargs.setdefault("disable", None if os.environ.get("LOGICAL_PROGRESS") != "1" else False)
    if tqdm is None:
        return QuietBar(items)
    return tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


class QuietBar:
    """What `progress` returns when tqdm is not installed: iterates `items`; update, set_postfix, close and
    `with` do nothing."""

    def __init__(self, items: Iterable[T] | None) -> None:
        self.items = items

    def __iter__(self) -> Iterator[T]:
        return iter(self.items if self.items is not None else ())

    def __enter__(self) -> "QuietBar":
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

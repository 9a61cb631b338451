"""Command-line plumbing shared by `logical-synth` and `logical-train`: clean errors and progress bars."""

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click
from tqdm import tqdm

from synth.errors import LogicalError

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
    return tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def say(message: str) -> None:
    """One line of status for the user, on stderr so stdout stays machine-readable."""
    click.echo(message, err=True)

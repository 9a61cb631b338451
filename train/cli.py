"""`logical-train`: fit the localization network from shards; `eval` and `predict` with a checkpoint."""

import click

from synth import __version__
from synth.console import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logical-train")
def cli() -> None:
    """Train and evaluate the anomaly localization network."""


# Commands are added below, one section per command.


def main() -> None:
    cli()

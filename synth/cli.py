"""`logical-synth`: scan datasets, fit the edge-to-image generator, build, show, pack, verify, inspect, export."""

import click

from synth import __version__
from synth.console import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logical-synth")
def cli() -> None:
    """Generate synthetic logical and structural anomalies (LogicAL) from normal images."""


# Commands are added below, one section per command.


def main() -> None:
    cli()

"""`python -m synth` = `logical-synth` (for machines where the package is importable but not installed)."""

from synth.cli import main

main()

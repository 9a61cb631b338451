"""`python -m train` = `logical-train` (also `torchrun ... -m train ...` without the console script)."""

from train.cli import main

main()

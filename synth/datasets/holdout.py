"""Normal images a trained model never sees, set aside at build time for calibrating decision thresholds.

A model's decision threshold must be chosen on normal images it was not trained on (its training normals
score lower than new ones, so a threshold fitted there rejects too many good parts on the line). A
dataset with a validation split (MVTec LOCO, toybox) has such images already; for the others the build
holds out a share of the training normals: `HOLDOUT_SHARE` of them, at least `HOLDOUT_MIN`, never more than
half (the build needs at least 2 sources), chosen from the build seed alone so every machine and rerun sets
aside the same files. The manifest records the choice (`config.calibration`), which `logical-train` reads
after fitting.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from synth.datasets.decode import broken_link

HOLDOUT_SHARE = 0.1
HOLDOUT_MIN = 4
HOLDOUT_STREAM = 0x6F1D  # keeps this choice independent of every other draw made from the build seed


def holdout_count(n: int) -> int:
    """How many of `n` training normals are held out: ceil(10 %), at least 4, at most n // 2 (0 for n < 4)."""
    if n < 4:
        return 0
    return min(max(math.ceil(HOLDOUT_SHARE * n), HOLDOUT_MIN), n // 2)


def split_holdout(paths: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """(kept for the build, held out) from the training normals `paths`, both in their original order.

    Deterministic in (seed, number of paths): a seeded permutation picks `holdout_count(len(paths))` of them.
    """
    k = holdout_count(len(paths))
    picked = set(np.random.default_rng([HOLDOUT_STREAM, int(seed)]).permutation(len(paths))[:k].tolist())
    return ([p for i, p in enumerate(paths) if i not in picked], [p for i, p in enumerate(paths) if i in picked])


def _name(path: Path, root: Path) -> str:
    path, root = Path(path), Path(root)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def set_aside(reader, category: str, paths: list[Path], seed: int) -> tuple[list[Path], dict]:
    """The training normals to build from and the manifest's calibration record.

    With validation normals (`reader.validation_images`) every training image is kept and the record names
    the validation images; else a share of the images that are not broken links is held out (`split_holdout`)
    and the record names those. Record:
    {"split": "validation" | "holdout", "root": dataset root, "images": [paths relative to root]}.
    """
    root = Path(reader.root)
    validation = list(reader.validation_images(category))
    if validation:
        kept, calibration, split = list(paths), validation, "validation"
    else:   # a broken link stays with the build, which reports it (or skips it with --skip-bad)
        _, calibration = split_holdout([p for p in paths if not broken_link(p)], seed)
        kept, split = [p for p in paths if p not in set(calibration)], "holdout"
    return kept, {"split": split, "root": str(root.resolve()), "images": [_name(p, root) for p in calibration]}


def calibration_paths(record: dict, root: Path | None = None) -> list[Path]:
    """The image files of a manifest's calibration record, under `root` when given (the data moved), else
    under the root recorded at build time; absolute names stay as they are."""
    base = Path(root) if root is not None else Path(str(record.get("root", ".")))
    return [base / name for name in record.get("images", [])]

"""Dataset readers, one per on-disk layout, behind `open_dataset(name, root)`."""

from __future__ import annotations

from pathlib import Path

from synth.datasets.base import DefectRegion, Reader, TestItem, image_shape
from synth.errors import DatasetError

DATASETS = ("mvtec", "mvtec_loco", "visa", "madsim", "folder", "toybox")
RAW_ROOT = Path("data/raw")
TOYBOX_ROOT = RAW_ROOT / "toybox"   # raw like the others: generated data goes to data/toybox/<category>

__all__ = ["DATASETS", "DefectRegion", "Reader", "TestItem", "image_shape", "open_dataset"]


def open_dataset(name: str, root: Path | None = None) -> Reader:
    """The reader for dataset `name` at `root` (default `data/raw/<name>`).

    The toybox (default `data/raw/toybox`) is written on first use (synth.datasets.toybox.materialise).

    DatasetError when the name is unknown or the root is missing or not in the layout.
    """
    if name == "toybox":
        from synth.datasets.mvtec_loco import MvtecLocoReader
        from synth.datasets.toybox import LICENCE, materialise

        root = materialise(Path(root) if root is not None else TOYBOX_ROOT)
        return MvtecLocoReader(root, name="toybox", licence=LICENCE)
    root = Path(root) if root is not None else RAW_ROOT / name
    if name == "mvtec":
        from synth.datasets.mvtec import MvtecReader as cls
    elif name == "mvtec_loco":
        from synth.datasets.mvtec_loco import MvtecLocoReader as cls
    elif name == "visa":
        from synth.datasets.visa import VisaReader as cls
    elif name == "madsim":
        from synth.datasets.madsim import MadsimReader as cls
    elif name == "folder":
        from synth.datasets.folder import FolderReader as cls
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return cls(root)

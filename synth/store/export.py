"""Exporting a generated dataset (directory or archive) as PNG folders in the MVTec-AD layout, for tools that
read that layout (anomalib's MVTec/Folder loaders)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from synth.console import progress
from synth.datasets.images import save_image
from synth.errors import ArchiveError
from synth.store.archive import open_dataset_path, plain_name
from synth.store.reader import GeneratedDataset


def export_mvtec(path: Path, out: Path, cache_dir: Path | None = None) -> Path:
    """MVTec-AD layout under out/<category>: train/good (sources), test/<strategy>/<id>.png,
    ground_truth/<strategy>/<id>_mask.png (0/255); written to a tmp folder, then renamed."""
    path, out = Path(path), Path(out)
    with GeneratedDataset(open_dataset_path(path, cache_dir), verify=path.is_dir()) as ds:
        category = plain_name(ds.manifest.get("category"))
        final = out / category
        if final.exists():
            raise ArchiveError(f"{final}: already exists; remove it or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{category}-", suffix=".tmp", dir=out))
        try:
            _write_mvtec(ds, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _write_mvtec(ds: GeneratedDataset, root: Path) -> None:
    """Sources as train/good/<s>.png; sample i as test/<strategy>/<i>.png and its mask (0/255)."""
    width = max(3, len(str(ds.source_count() - 1)))
    for s in progress(ds.true_normal_sources(), "export train/good"):   # not an import's anomaly-as-normal rows
        save_image(root / "train" / "good" / f"{s:0{width}d}.png", ds.source(s)["image"])
    width = max(3, len(str(len(ds) - 1)))
    for i in progress(range(len(ds)), "export test", total=len(ds)):
        sample = ds[i]
        strategy = plain_name(sample.meta["strategy"])
        save_image(root / "test" / strategy / f"{i:0{width}d}.png", sample.anomaly)
        save_image(root / "ground_truth" / strategy / f"{i:0{width}d}_mask.png", sample.mask)

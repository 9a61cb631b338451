"""Which defects a trained model finds: mean sPRO per defect name at the thresholds where the good images'
pixels reach a false-positive rate of 5% and 1% (MVTec LOCO layout; prints numbers, no assertions).

AU-sPRO averages over every defect of a split; this says which ones carry it (e.g. a model that finds every
wrong part but no missing one).

    .venv/bin/python benchmarks/defect_breakdown.py runs/demo/model/model.pt --dataset toybox --category tray

`--oracle MODEL.pt` (a model trained on the oracle set, benchmarks/oracle.py) adds each defect's sPRO @ FPR 5% as
a share of the oracle's: how much of the ceiling this localizer at this budget reaches that a synthesizer gives.
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from synth.datasets import open_dataset
from synth.datasets.bitdepth import data_depth
from synth.datasets.images import load_rgb
from train.evaluate import _channels, infer, resolve_device
from train.model import load_checkpoint
from train.outputs import upsample_map


def breakdown(checkpoint: Path, dataset: str, root: Path | None, category: str, device: str = "auto",
              fprs: tuple[float, ...] = (0.05, 0.01)) -> dict[str, dict]:
    """{defect name: {"channels": n, "sPRO@FPR": mean sPRO, ...}} for one checkpoint on one test split."""
    dev = resolve_device(device)
    model, config = load_checkpoint(Path(checkpoint), str(dev))
    reader = open_dataset(dataset, root)
    items = reader.test_items(category)
    for item in items:
        item.check_masks()
    bits = data_depth(reader.train_images(category)).bits
    maps = []
    for item in items:
        image = load_rgb(item.path, bits)
        low, _ = infer(model, [image], int(config["size"]), dev)
        maps.append(upsample_map(low[0], image.shape[:2]))
    good = np.concatenate([m.ravel() for m, it in zip(maps, items, strict=True) if it.label == 0])
    thresholds = {f: float(np.quantile(good, 1.0 - f)) for f in fprs}
    found: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for amap, item in zip(maps, items, strict=True):
        for region, (mask, saturation) in zip(item.regions, _channels(item, amap.shape), strict=True):
            for f, t in thresholds.items():
                hit = float((amap[mask] > t).sum()) / max(saturation, 1e-9)
                found[region.defect_name][f].append(min(hit, 1.0))
    return {name: {"channels": len(v[fprs[0]]), **{f"sPRO@{f:g}": float(np.mean(v[f])) for f in fprs}}
            for name, v in found.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="model.pt files to compare")
    ap.add_argument("--dataset", default="toybox")
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--category", default="tray")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--oracle", type=Path, default=None, help="the oracle's model.pt (benchmarks/oracle.py)")
    args = ap.parse_args()
    oracle = breakdown(args.oracle, args.dataset, args.root, args.category, args.device) if args.oracle else {}
    for checkpoint in args.checkpoints:
        print(f"# {checkpoint}")
        extra = (" share of oracle @ 5% |", "---|") if oracle else ("", "")
        print(f"| defect | channels | sPRO @ FPR 5% | sPRO @ FPR 1% |{extra[0]}\n|---|---|---|---|{extra[1]}")
        for name, row in breakdown(checkpoint, args.dataset, args.root, args.category, args.device).items():
            share = share_of(row, oracle.get(name)) if oracle else ""
            print(f"| {name} | {row['channels']} | {100 * row['sPRO@0.05']:.0f} | {100 * row['sPRO@0.01']:.0f} |"
                  + share)


def share_of(row: dict, ceiling: dict | None) -> str:
    """` NN% |`: this row's sPRO @ FPR 5% as a percentage of the oracle's (`–` where the oracle finds none)."""
    top = ceiling["sPRO@0.05"] if ceiling else 0.0
    return f" {100 * row['sPRO@0.05'] / top:.0f}% |" if top > 0 else " – |"


if __name__ == "__main__":
    main()

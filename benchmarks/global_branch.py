"""The global branch (issue 24) measured beyond compare_synthesizers' table: how its map and image score
combine with the U-Net's, and side-by-side heatmaps of the paper's network and a global one.

    python benchmarks/global_branch.py combine runs/x/model/model.pt --dataset toybox --category bag
    python benchmarks/global_branch.py heatmaps PAPER.pt GLOBAL.pt --dataset toybox --category bag \\
        --defects extra_part,wrong_part,missing_part --out bag_heatmaps.png

`attach PAPER.pt --shards DATA --out X.pt` writes the `--arch composition` checkpoint of a paper checkpoint:
the same weights (training with `--arch composition` and the same seed yields them: tests/test_composition.py)
plus the composition branch fitted on DATA's normal sources, so the two are compared on identical networks.

`time --category bag` times the composition branch on the CPU: its fit on the category's train normals and its
score per test image, both at the demo's 128 px (median of --repeats runs, benchmarks/timing.py).

`combine` evaluates one trained global checkpoint once per mode of train.model.COMBINES (a copy of the
checkpoint with only `config.combine` changed, so the weights are the same) and prints image AUROC and
AU-sPRO per split plus sPRO at FPR 5% per defect (defect_breakdown). `heatmaps` draws one row per defect
name (its first test image): image | ground truth | paper's map | global map, maps on a fixed 0..1 JET scale.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from defect_breakdown import breakdown

from synth.datasets import open_dataset
from synth.datasets.bitdepth import data_depth
from synth.datasets.images import load_rgb, save_image
from synth.store.checkpoint import save_torch
from train.evaluate import evaluate, infer, resolve_device
from train.model import COMBINES, load_checkpoint, read_checkpoint
from train.outputs import colour_overlay, upsample_map

TILE = 192


def combine_table(checkpoint: Path, dataset: str, root: Path | None, category: str, out: Path,
                  device: str = "auto") -> list[tuple[str, dict, dict]]:
    """(mode, evaluate()'s metrics, breakdown()) per combine mode of a global checkpoint; the copies and
    their reports go under `out/<mode>/`."""
    payload = read_checkpoint(checkpoint)
    if "arch" not in payload["config"]:
        raise SystemExit(f"{checkpoint}: the paper's network has one map only (no global branch)")
    rows = []
    for mode in COMBINES:
        folder = out / mode.replace("+", "_")
        copy = folder / "model.pt"
        save_torch(copy, payload | {"config": payload["config"] | {"combine": mode}})
        metrics = evaluate(copy, dataset, root, category, folder / "eval", device=device, n_heatmaps=0)["metrics"]
        rows.append((mode, metrics, breakdown(copy, dataset, root, category, device)))
    return rows


def attach(paper: Path, shards: Path, out: Path) -> Path:
    """Write `out`: the paper checkpoint as `--arch composition` (its default combine), the composition branch
    fitted on the normal sources of `shards` at the checkpoint's size (train.composition.fit_on_shards)."""
    from train.balanced import training_data
    from train.composition import fit_on_shards
    from train.model import DEFAULT_COMBINE

    payload = read_checkpoint(paper)
    if "arch" in payload["config"]:
        raise SystemExit(f"{paper}: not a paper checkpoint (arch {payload['config']['arch']})")
    data = training_data(shards, int(payload["config"]["size"]), 0.5, 0, False, 0.0)
    composition = fit_on_shards(data, shards, print)
    config = payload["config"] | {"arch": "composition", "combine": DEFAULT_COMBINE["composition"]}
    keep = {k: v for k, v in payload.items() if k not in ("optimizer", "scheduler", "rng", "thresholds")}
    save_torch(out, keep | {"config": config, "composition": composition.state()})
    return out


def time_composition(dataset: str, root: Path | None, category: str, size: int, repeats: int) -> dict:
    """Median seconds of Composition.fit on the category's train normals and of one `score` per test image
    (images resized to `size` px first, as the shards hold them)."""
    from timing import median_seconds

    from synth.datasets.images import resize_rgb
    from train.composition import Composition

    reader = open_dataset(dataset, root)
    bits = data_depth(reader.train_images(category)).bits
    normals = [resize_rgb(load_rgb(p, bits), size) for p in reader.train_images(category)]
    tests = [resize_rgb(load_rgb(it.path, bits), size) for it in reader.test_items(category)]
    fit, _ = median_seconds(lambda: Composition.fit(normals), "cpu", repeats)
    comp = Composition.fit(normals)
    score, _ = median_seconds(lambda: [comp.score(img) for img in tests], "cpu", repeats)
    return {"normals": len(normals), "fit_s": fit, "test_images": len(tests), "score_ms_per_image":
            1000 * score / max(len(tests), 1)}


def print_combine(rows: list[tuple[str, dict, dict]]) -> None:
    defects = sorted({name for _, _, per in rows for name in per})
    loco = "mean" in rows[0][1]
    cols = (["logical I-AUROC", "logical AU-sPRO", "structural I-AUROC", "structural AU-sPRO", "mean I-AUROC",
             "mean AU-sPRO"] if loco else ["image AUROC", "AUPRO"])
    print("| combine | " + " | ".join(cols + [f"{d} sPRO@5%" for d in defects]) + " |")
    print("|---" * (1 + len(cols) + len(defects)) + "|")
    for mode, m, per in rows:
        if loco:
            vals = [m.get(s, {}).get(k) for s in ("logical", "structural", "mean") for k in ("image_auroc", "au_spro")]
        else:
            vals = [m["all"]["image_auroc"], m["all"]["aupro"]]
        vals += [per.get(d, {}).get("sPRO@0.05") for d in defects]
        print(f"| {mode} | " + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in vals) + " |")


def heatmap_rows(checkpoints: list[Path], dataset: str, root: Path | None, category: str, defects: list[str],
                 device: str = "auto") -> np.ndarray:
    """RGB uint8 figure: per defect name its first test image, its ground truth, each checkpoint's map."""
    dev = resolve_device(device)
    models = [load_checkpoint(c, str(dev)) for c in checkpoints]
    reader = open_dataset(dataset, root)
    items = reader.test_items(category)
    bits = data_depth(reader.train_images(category)).bits
    rows = []
    for name in defects:
        item = next((it for it in items if it.label == 1 and any(r.defect_name == name for r in it.regions)
                     or it.split == name), None)
        if item is None:
            raise SystemExit(f"no test image with defect {name!r} in {dataset}/{category}")
        image = load_rgb(item.path, bits)
        tile = lambda a: cv2.resize(a, (TILE, TILE), interpolation=cv2.INTER_AREA)  # noqa: E731
        gt = np.repeat(item.mask(image.shape[:2]).astype(np.uint8)[..., None] * 255, 3, axis=2)
        row = [tile(image), tile(gt)]
        for model, config in models:
            low, score = infer(model, [image], int(config["size"]), dev)
            cell = tile(colour_overlay(image, upsample_map(low[0], image.shape[:2])))
            cv2.putText(cell, f"{config.get('arch', 'paper')} {score[0]:.2f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, (255, 255, 255), 1, cv2.LINE_AA)
            row.append(cell)
        cv2.putText(row[0], name, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("combine", "heatmaps", "attach", "time"))
    ap.add_argument("--size", type=int, default=128, help="time: the shards' image size")
    ap.add_argument("--repeats", type=int, default=3, help="time: timed runs (median)")
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--dataset", default="toybox")
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--category", default="bag")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--defects", default="extra_part,wrong_part,missing_part")
    ap.add_argument("--out", type=Path, default=Path("runs/global_branch"))
    ap.add_argument("--shards", type=Path, default=None, help="attach: the generated dataset the model trained on")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.command != "time" and not args.checkpoints:
        raise SystemExit(f"{args.command} takes one or more checkpoints")
    if args.command == "time":
        print(time_composition(args.dataset, args.root, args.category, args.size, args.repeats))
    elif args.command == "attach":
        if len(args.checkpoints) != 1 or args.shards is None:
            raise SystemExit("attach takes one paper checkpoint, --shards and --out")
        print(f"wrote {attach(args.checkpoints[0], args.shards, args.out)}")
    elif args.command == "combine":
        for checkpoint in args.checkpoints:
            print(f"# {checkpoint}")
            print_combine(combine_table(checkpoint, args.dataset, args.root, args.category,
                                        args.out / checkpoint.parent.parent.name, args.device))
    else:
        figure = heatmap_rows(args.checkpoints, args.dataset, args.root, args.category,
                              [d.strip() for d in args.defects.split(",") if d.strip()], args.device)
        save_image(args.out, figure)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Does the edge map keep every visible structure line? Recall of the toybox's drawn lines, and edges on texture.

The toybox drawing code knows where every tray wall and part outline is (synth.datasets.toybox_truth), so
an extractor is measured against what was drawn, not against another detector:
- recall: share of drawn structure-line pixels (tray outline, compartment walls, part outlines and holes)
  with an edge pixel (> 0.5) within 2 px;
- off-line: share of edge pixels farther than 2 px from any drawn line (structure or the faint detail lines on
  parts): shadows, shading and the wood texture;
- wood: share of the wooden bench's pixels (outside the tray, 4 px margin) that are edge pixels;
- hazelnut: edge density (share of edge pixels) on real photographs (hazelnut_toy), to see that no
  extractor floods a real texture with edges.
Prints one row per extractor and size; `--grid PNG` also saves image | v1 | v2 | PiDiNet for 3 toybox and 2
hazelnut images (at the first size).

    .venv/bin/python benchmarks/edge_recall.py --pidinet-weights ../shared/weights/table5_pidinet.pth \\
        --grid runs/edge_grid.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from synth.datasets.images import list_images, load_rgb, resize_rgb, save_image
from synth.datasets.toybox_tray import render, scene_for
from synth.datasets.toybox_truth import structure_lines, tray_mask
from synth.features.edges import ClassicEdges
from synth.sheet import contact_sheet

HAZELNUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hazelnut_toy" / "hazelnut" / "train" / "good"


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool: within `radius` px (disk) of a True pixel of `mask`."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def toybox_case(index: int, size: int, seed: int = 0) -> dict:
    """Train image `index` of the toybox at `size` px with its drawn lines and its wood mask."""
    scene = scene_for(seed, "train", index)
    structure, details = structure_lines(scene, size)
    return {"image": resize_rgb(render(scene), size), "structure": structure, "details": details,
            "wood": ~near(tray_mask(scene, size), 4)}


def line_scores(edge: np.ndarray, case: dict, radius: int = 2) -> dict[str, float]:
    """recall, off_line and wood (see the module docstring) of one edge map (> 0.5 = edge) on one case."""
    lines = edge > 0.5
    drawn = case["structure"] | case["details"]
    return {"recall": float(near(lines, radius)[case["structure"]].mean()),
            "off_line": float((~near(drawn, radius))[lines].mean()) if lines.any() else 0.0,
            "wood": float(lines[case["wood"]].mean())}


def extractors(pidinet_weights: Path | None) -> dict:
    """name -> extractor: classic-v1, classic-v2 and (with weights) PiDiNet."""
    out = {"classic-v1": ClassicEdges.v1(), "classic-v2": ClassicEdges()}
    if pidinet_weights is not None:
        from synth.features.pidinet import PiDiNetEdges

        out["pidinet"] = PiDiNetEdges(Path(pidinet_weights))
    return out


def measure(names: dict, sizes: list[int], n_toybox: int, n_hazelnut: int) -> list[dict]:
    """One row per (extractor, size): mean and min recall, mean off-line and wood share, hazelnut density."""
    photos = list_images(HAZELNUT)[:n_hazelnut] if HAZELNUT.is_dir() else []
    rows = []
    for size in sizes:
        cases = [toybox_case(i, size) for i in range(n_toybox)]
        hazelnuts = [resize_rgb(load_rgb(p), size) for p in photos]
        for name, extractor in names.items():
            scores = [line_scores(e, c) for e, c in zip(extractor.batch([c["image"] for c in cases]), cases,
                                                         strict=True)]
            density = [float((e > 0.5).mean()) for e in extractor.batch(hazelnuts)] if hazelnuts else [np.nan]
            rows.append({"extractor": name, "size": size,
                         "recall": np.mean([s["recall"] for s in scores]),
                         "recall_min": np.min([s["recall"] for s in scores]),
                         "off_line": np.mean([s["off_line"] for s in scores]),
                         "wood": np.mean([s["wood"] for s in scores]),
                         "hazelnut": float(np.mean(density))})
    return rows


def grid(names: dict, size: int, out: Path) -> None:
    """image | one column per extractor, for toybox train 0-2 and the first 2 hazelnut photos."""
    images = [toybox_case(i, size)["image"] for i in range(3)]
    labels = [f"toybox train {i}" for i in range(3)]
    if HAZELNUT.is_dir():
        for p in list_images(HAZELNUT)[:2]:
            images.append(resize_rgb(load_rgb(p), size))
            labels.append(f"hazelnut {p.name}")
    maps = {name: extractor.batch(images) for name, extractor in names.items()}
    rows = [[img, *(maps[name][k] for name in names)] for k, img in enumerate(images)]
    save_image(out, contact_sheet(rows, labels, ["image", *names]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--toybox", type=int, default=10, help="toybox train images per size")
    parser.add_argument("--hazelnut", type=int, default=5, help="hazelnut_toy photos per size")
    parser.add_argument("--pidinet-weights", type=Path, default=None)
    parser.add_argument("--grid", type=Path, default=None, help="save the sample grid here (PNG)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    names = extractors(args.pidinet_weights)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"toybox: {args.toybox} train images; hazelnut_toy: {args.hazelnut} photos; edge = map > 0.5; "
          "lines within 2 px")
    print("| extractor | size | recall (mean) | recall (min) | off-line share | wood edge share | "
          "hazelnut density |")
    print("|---|---|---|---|---|---|---|")
    for r in measure(names, sizes, args.toybox, args.hazelnut):
        print(f"| {r['extractor']} | {r['size']} | {r['recall']:.3f} | {r['recall_min']:.3f} | "
              f"{r['off_line']:.3f} | {r['wood']:.4f} | {r['hazelnut']:.4f} |")
    if args.grid is not None:
        grid(names, sizes[0], args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()

"""Held-out quality INSIDE edit-sized holes, for both generator kinds on the same holes (issue 16, item 2).

Holes are drawn by the edit machinery (synth.render.holes.validation_holes: the region of a random edit,
dilated as compose dilates it) on held-out normals: the validation split where the dataset has one
(toybox, LOCO), else the test split's good images (MVTec), which no fit sees. Each render is pasted into
the normal image through its hole (what an edit keeps of it) and compared with the normal image over the
hole's pixels: SSIM (window 11) and PSNR. "telea" is OpenCV's classical inpainting of the same holes
(context only, no edges), a floor that shows how much the edges and the learning add.

"erased visible" checks that the edges steer the render: the hole is rendered again with its edges erased
(a `remove` edit of the whole hole) and synth.edit.compose.compose marks where that render differs from the
normal-edge one; the column is the share of hole pixels marked (0 = the generator ignores the edges there
and every edit there would be rejected as "empty_mask").

    .venv/bin/python benchmarks/hole_quality.py --dataset toybox --category tray \\
        --global G.pt --inpaint I.pt [--root R] [--size 128] [--per-image 2] [--sheet out.png]

Without --global/--inpaint the missing checkpoint is fitted first (tiny preset, default epochs, CPU).
Without --root on toybox the demo dataset is made in a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from synth.datasets import open_dataset
from synth.datasets.images import load_rgb, resize_rgb, save_image
from synth.edit.compose import compose
from synth.features.edges import get_extractor
from synth.render.holes import hole_scores, validation_holes
from synth.render.loader import load_generator
from synth.sheet import contact_sheet


def held_out(reader, category: str) -> list[Path]:
    """Normals no fit sees: validation images, else the test split's good ones."""
    paths = reader.validation_images(category)
    return paths or [item.path for item in reader.test_items(category) if item.label == 0]


def telea(normals: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """OpenCV's Telea inpainting of each hole (radius 3 px): context only, no edges."""
    return np.stack([cv2.inpaint(n, h.astype(np.uint8), 3, cv2.INPAINT_TELEA) for n, h in zip(normals, holes,
                                                                                            strict=True)])


def measure(generators: dict[str, Path], dataset: str, root: Path | None, category: str, size: int,
            per_image: int, seed: int, sheet: Path | None) -> list[str]:
    """Table rows (markdown) of SSIM and PSNR inside the holes, one per kind, and the sheet when asked."""
    reader = open_dataset(dataset, root)
    extractor = get_extractor("classic")
    images = [resize_rgb(load_rgb(p), size) for p in held_out(reader, category)]
    edges = [extractor(im) for im in images]
    holes = validation_holes(images, edges, seed, per_image)
    idx = [i for i, _ in holes]
    masks = np.stack([m for _, m in holes])
    normals = np.stack([images[i] for i in idx])
    edge_maps = np.stack([edges[i] for i in idx]).astype(np.float32)
    renders = {"telea": telea(normals, masks)}
    for kind, path in generators.items():
        renderer = load_generator(path, edges=extractor.identity, size=size, device="cpu")
        if renderer.kind != kind:
            raise SystemExit(f"{path} is a {renderer.kind} generator, given as --{kind}")
        renders[kind] = renderer.render(edge_maps, normals, masks)
    visible = {"telea": float("nan")}
    for kind, path in generators.items():
        erased = load_generator(path, size=size, device="cpu").render(edge_maps * ~masks, normals, masks)
        marked = [compose(n, a, r, m).mask[m].mean() for n, a, r, m in zip(normals, erased, renders[kind], masks,
                                                                             strict=True)]
        visible[kind] = float(np.mean(marked))
    rows = []
    scores = {k: hole_scores(r, normals, masks) for k, r in renders.items()}
    for kind, values in scores.items():
        s, p = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        p = p[np.isfinite(p)]
        rows.append(f"| {dataset}/{category} | {kind} | {len(values)} | {masks.mean(axis=(1, 2)).mean():.3f} | "
                    f"{s.mean():.3f} | {np.percentile(s, 5):.3f} | {p.mean():.2f} | {visible[kind]:.2f} |")
    if sheet is not None:
        tiles, labels = [], []
        for j in range(min(8, len(idx))):
            blanked = np.where(masks[j][..., None], np.uint8(128), normals[j])
            tiles.append([normals[j], blanked, *(renders[k][j] for k in ("global", "inpaint", "telea")
                                                 if k in renders)])
            labels.append("  ".join(f"{k} {scores[k][j][0]:.3f}" for k in ("global", "inpaint") if k in scores))
        columns = ["normal", "hole", *(k for k in ("global", "inpaint", "telea") if k in renders)]
        save_image(sheet, contact_sheet(tiles, labels, columns, banner=f"{dataset}/{category}: SSIM in the hole"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--category", required=True)
    parser.add_argument("--global", dest="global_", type=Path, default=None, help="global generator checkpoint")
    parser.add_argument("--inpaint", type=Path, default=None, help="inpainting generator checkpoint")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-image", type=int, default=2, help="holes per held-out normal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", type=Path, default=None, help="write normal | hole | global | inpaint | telea")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None and args.dataset == "toybox":
            from synth.datasets.toybox import materialise

            root = materialise(Path(tmp) / "toybox", seed=0)
        generators = {"global": args.global_, "inpaint": args.inpaint}
        for kind, path in generators.items():
            if path is None:
                from synth.render.fitting import fit_for_category

                generators[kind] = fit_for_category(args.dataset, root, args.category, args.size, "tiny",
                                                    out=Path(tmp) / f"{kind}.pt", device="cpu", kind=kind)
        rows = measure(generators, args.dataset, root, args.category, args.size, args.per_image, args.seed,
                       args.sheet)
    print("| data | renderer | holes | hole / image | SSIM in hole | p05 | PSNR in hole (dB) | erased visible |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

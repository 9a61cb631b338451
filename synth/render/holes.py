"""Holes for the inpainting generator kind: drawn by the edit machinery on normal images for its training
(with image and edges TPS-jittered together inside the hole), and its quality measured inside holes.

See synth.render.inpaint for the kind itself and the measurements behind these choices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth.edit.compose import edit_hole
from synth.edit.warp import random_tps, remap
from synth.ssim import psnr_within, ssim_within

# Strategies whose regions train the holes: every edit that renders (colour only shifts pixels).
HOLE_STRATEGIES = ("remove", "replace", "merge", "stroke", "jitter", "warp")


EDGE_JITTER = 0.03              # TPS control-point shift inside holes, fraction of the width


# Holes per fitting example: the union of 1..TRAIN_HOLES edit holes. Only hole pixels teach the network, so
# a few holes per image give it more to learn from per step (EdgeConnect trains on masks of 10-60% of the
# image); each stays edit-sized, as at synthesis time.
TRAIN_HOLES = 4


# Chance that a fitting example's hole is the whole image: the global generator's task, every pixel
# supervised, so the parts' looks are learnt as fast as by the global kind; the other examples teach the use
# of the context.
FULL_HOLE_P = 0.25


def hole_source(image: np.ndarray, edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground bool (H,W), semantic regions uint16 (H,W)) of a normal image, as build prepares them
    (synth.pipeline.prepare_source): what `draw_hole` draws edit regions from."""
    from synth.features.regions import jnd_and_foreground, semantic_regions

    jnd, foreground = jnd_and_foreground(image)
    return foreground, np.asarray(semantic_regions(image, edge, foreground, jnd), np.uint16)


def draw_hole(edge: np.ndarray, foreground: np.ndarray, regions: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """An edit-sized hole, bool (H, W): the region of a random edit (`HOLE_STRATEGIES`, planned by
    synth.edit.strategies.plan_edit on this image's own maps, so parts and arbitrary shapes under the ScaleRule),
    dilated by `edit_hole`. Falls back to arbitrary shapes on the foreground when no edit fits."""
    from synth.edit.strategies import plan_edit
    from synth.features.regions import arbitrary_region

    strategy = HOLE_STRATEGIES[int(rng.integers(len(HOLE_STRATEGIES)))]
    edit = plan_edit(strategy, edge, foreground, regions, None, rng)
    region = edit.region if edit is not None else arbitrary_region(edge.shape, foreground, rng)
    if not region.any():
        region = arbitrary_region(edge.shape, np.ones(edge.shape, bool), rng)
    return edit_hole(region)


def jitter_inside(image: np.ndarray, edge: np.ndarray, hole: np.ndarray, rng: np.random.Generator,
                  shift: float = EDGE_JITTER) -> tuple[np.ndarray, np.ndarray]:
    """(image, edges) with one DeepSIM TPS warp (3x3 grid, +-shift * W) applied to both, inside the hole
    only: the hole's structure never sits exactly where the image around it would put it, so the network
    must draw what the edges say rather than continue the context, and the target always agrees with the
    edges it is given (warping the edges alone taught the network to distrust them)."""
    maps = random_tps(edge.shape, rng, grid=3, max_shift=shift)
    warped_image, warped_edge = remap(image, maps), remap(edge, maps)
    return (np.where(hole[..., None], warped_image, image).astype(np.uint8),
            np.where(hole, warped_edge, edge).astype(np.float32))


def training_sample(image: np.ndarray, edge: np.ndarray, foreground: np.ndarray, regions: np.ndarray,
                    rng: np.random.Generator, aug) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (image uint8 (H,W,3), edges float32 (H,W), hole bool (H,W)) fitting example: 1..TRAIN_HOLES
    holes drawn on the image's own maps, then the geometric augmentation (synth.render.training.augment, the hole warped
    along as a 4th image channel), then image and edges warped together inside the hole (`jitter_inside`)."""
    from synth.render.training import augment

    if rng.random() < FULL_HOLE_P:
        hole = np.ones(edge.shape, bool)
    else:
        hole = draw_hole(edge, foreground, regions, rng)
        for _ in range(int(rng.integers(TRAIN_HOLES))):
            hole |= draw_hole(edge, foreground, regions, rng)
    stacked, edge = augment(np.dstack([image, hole.astype(np.uint8) * 255]), edge, rng, aug)
    image, hole = np.ascontiguousarray(stacked[..., :3]), stacked[..., 3] > 127
    image, edge = jitter_inside(image, edge, hole, rng)
    return image, edge, hole


def validation_holes(images: list[np.ndarray], edges: list[np.ndarray], seed: int,
                     per_image: int = 1) -> list[tuple[int, np.ndarray]]:
    """Edit-sized holes on held-out normals, (image index, hole) pairs, `per_image` each; fixed by `seed`
    so both generator kinds are measured on the same holes."""
    from synth.rng import derive_seed

    out = []
    for i, (image, edge) in enumerate(zip(images, edges, strict=True)):
        foreground, regions = hole_source(image, edge)
        rng = np.random.default_rng(derive_seed(seed, "validation-holes", i))
        out += [(i, draw_hole(edge, foreground, regions, rng)) for _ in range(per_image)]
    return out


def hole_scores(renders: np.ndarray, normals: np.ndarray, holes: np.ndarray) -> list[tuple[float, float]]:
    """(SSIM, PSNR dB) inside each hole of the render pasted into the normal image (what an edit keeps of
    a render), against the normal image."""
    out = []
    for r, n, m in zip(renders, normals, holes, strict=True):
        pasted = np.where(m[..., None], r, n)
        out.append((ssim_within(pasted, n, m), psnr_within(pasted, n, m)))
    return out


def hole_quality(renderer, images: list[np.ndarray], edges: list[np.ndarray], seed: int = 0) -> dict:
    """The inpainting kind's quality record: SSIM inside edit-sized validation holes (mean, std, 5th
    percentile, every value; `within` "hole"), the reference of the collapse gate, plus the mean PSNR."""
    holes = validation_holes(images, edges, seed)
    idx = [i for i, _ in holes]
    masks = np.stack([m for _, m in holes])
    normals = np.stack([images[i] for i in idx])
    renders = renderer.render(np.stack([edges[i] for i in idx]), normals, masks)
    scores = hole_scores(renders, normals, masks)
    values = [s for s, _ in scores]
    return {"ssim_mean": float(np.mean(values)), "ssim_std": float(np.std(values)),
            "ssim_p05": float(np.percentile(values, 5)), "ssim_values": [float(v) for v in values],
            "psnr_mean": float(np.mean([p for _, p in scores if np.isfinite(p)] or [0.0])), "within": "hole"}


def inpaint_grid(renderer, images: list[np.ndarray], edges: list[np.ndarray], path: Path, rows: int = 4,
                 seed: int = 0) -> None:
    """Contact sheet of rows (edges | input with the hole | inpainted | real), labelled with the SSIM inside
    the hole."""
    from synth.datasets.images import save_image
    from synth.sheet import contact_sheet

    holes = validation_holes(images[:rows], edges[:rows], seed)
    masks = np.stack([m for _, m in holes])
    normals = np.stack(images[:rows])
    renders = renderer.render(np.stack(edges[:rows]), normals, masks)
    blanked = np.where(masks[..., None], np.uint8(128), normals)
    tiles = [[e, b, r, n] for e, b, r, n in zip(edges[:rows], blanked, renders, normals, strict=True)]
    labels = [f"hole SSIM {s:.3f}" for s, _ in hole_scores(renders, normals, masks)]
    save_image(path, contact_sheet(tiles, labels, ["edges", "hole", "inpainted", "real"]))

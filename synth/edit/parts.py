"""Whole-part logical edits painted with the image's own pixels (ours; issue 23, the logical-defect taxonomy of
MVTec LOCO AD, Bergmann et al. 2022: missing, misplaced, swapped, wrong size, wrong combination):

  remove_part  a whole part, however large, goes missing; its hole is filled with the carrier (synth.edit.fill)
  move         a part leaves its place (hole filled) and lies elsewhere on the carrier, shifted and/or rotated
  swap         two parts of one image exchange places
  resize       a part stretched or shrunk along its main axis (PCA of its footprint) by a drawn factor
  recolour     a part takes the colour of the same part in another normal image (Lab statistics transfer)
  replace_part a part is swapped for another kind of part taken, pixels and all, from another normal image
               (the edge-map `replace` renders the other image's part with the generator instead)

Why pixels and not the generator: these edits move or remove regions of up to a fifth of the object, far
over what a small edge-to-image generator renders without collapsing (the scale rule exists for it), and
its renders are blurred at demo size; copying the image's own pixels keeps every part and the carrier
sharp, so the only thing wrong is the arrangement. Parts are the semantic regions (classical, or --regions
labels). Planning (`plan_*`, json-serialisable params from the edit's rng) and painting (`paint_part`, a pure
function of the source's image and labels and, for recolour, the other image's) are split as in
synth.edit.damage; the Edit's edge map draws the change for previews.

Label: the part footprints (old and new) plus every pixel whose colour moved visibly (Lab distance >=
VISIBLE_JND x JND, >= MIN_STEP levels), inside the edit region; `synth.edit.compose.paste` blends the
painted image in through that mask's feather, so beyond it the anomaly equals the normal image bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.edit.compose import Composed, clean_mask, default_sizes, lab_distance, paste
from synth.edit.edits import MIN_EDGE_PX, Edit, _affine_about, _warp
from synth.edit.fill import fill_hole
from synth.edit.geometry import dilate
from synth.features.jnd import jnd_map

PARTS = ("remove_part", "move", "swap", "resize", "recolour", "replace_part")
NEEDS_OTHER = ("recolour", "replace_part")  # they read the other normal image's pixels (synth.pipeline passes them)
VISIBLE_JND = 0.5   # as synth.edit.damage: a pixel is labelled when its colour moved this many JNDs ...
MIN_STEP = 2.0      # ... and at least this many Lab levels
MIN_VISIBLE = 0.2   # reject ("empty_mask") when less than this share of the footprints visibly changed
SHRINK, GROW = (0.6, 0.85), (1.2, 1.5)   # resize factors: a shorter / a longer part
UNLIKE = 0.5        # replace_part: a part whose `part_costs` is at least this is another kind of part
TRIES = 12          # placements drawn per planning attempt (move, swap, resize)
RING_ON_CARRIER = 0.5   # share of the ring around a part that another part must hold to carry it


def _labels(regions: np.ndarray | None) -> np.ndarray:
    if regions is None or not regions.any():
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.bincount(regions.ravel())[1:]) + 1


def _pick(regions: np.ndarray | None, rng: np.random.Generator) -> int | None:
    labels = _labels(regions)
    return int(labels[rng.integers(len(labels))]) if len(labels) else None


def _carry(regions: np.ndarray, label: int) -> np.ndarray:
    """The pixels that travel with a part: its footprint and its 1 px anti-aliased outline."""
    return dilate(regions == label, 1)


def carriers(regions: np.ndarray, moving: tuple[int, ...], pad: int) -> tuple[int, ...]:
    """The parts that carry the `moving` ones: for each, the other part under most of the `pad`-wide ring
    around it when that part holds at least RING_ON_CARRIER of the ring (a label printed on a bottle's liquid).
    Parts lying side by side on a carrier (screws in a bag) touch each other's ring too little to count."""
    found: list[int] = []
    for label in moving:
        part = regions == label
        ring = dilate(part, pad) & ~part
        under = regions[ring]
        under = under[(under > 0) & ~np.isin(under, moving)]
        if under.size:
            top = int(np.bincount(under).argmax())
            if (under == top).sum() >= RING_ON_CARRIER * ring.sum() and top not in found:
                found.append(top)
    return tuple(found)


def _free(regions: np.ndarray, foreground: np.ndarray, moving: tuple[int, ...], pad: int) -> np.ndarray:
    """Where a moving part may land and what fills the place it leaves: the foreground and the parts that carry
    it, away from every other part that stays put."""
    below = carriers(regions, moving, pad)
    stays = (regions > 0) & ~np.isin(regions, moving + below)
    return (foreground | np.isin(regions, below)) & ~dilate(stays, pad)


def _lands(footprint: np.ndarray, m: np.ndarray, free: np.ndarray) -> np.ndarray | None:
    """The footprint moved by the 2x3 matrix `m`, or None when it leaves the image or the free area."""
    ys, xs = np.nonzero(footprint)
    x, y = m @ np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    h, w = footprint.shape
    if x.min() < 0 or y.min() < 0 or x.max() > w - 1 or y.max() > h - 1:
        return None
    moved = _warp(footprint.astype(np.float32), m) >= 0.5
    if not moved.any() or (moved & ~free).sum() > 0.02 * moved.sum():
        return None
    return moved


def _moved_edges(edge: np.ndarray, holes: np.ndarray, pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Preview edge map: edges erased in `holes`, then each (footprint, matrix) piece's edges drawn moved."""
    out = np.where(holes, 0.0, edge).astype(np.float32)
    for footprint, m in pieces:
        out = np.maximum(out, np.clip(_warp(np.where(footprint, edge, 0.0).astype(np.float32), m), 0, 1))
    return out


def _matrix(m: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 5) for v in row] for row in m]


def plan_remove_part(edge, regions, rng, pad, **_):
    label = _pick(regions, rng)
    if label is None:
        return None
    region = dilate(regions == label, pad)
    if float(edge[region].sum()) < MIN_EDGE_PX:
        return None
    return np.where(region, 0.0, edge).astype(np.float32), region, {"label": label}


def plan_move(edge, regions, foreground, rng, pad, **_):
    label = _pick(regions, rng)
    if label is None:
        return None
    part = regions == label
    carry, free = _carry(regions, label), _free(regions, foreground, (label,), pad)
    ys, xs = np.nonzero(part)
    centre, size = (float(xs.mean()), float(ys.mean())), float(np.sqrt(part.sum()))
    for _ in range(TRIES):
        angle = float(rng.uniform(-180, 180)) if rng.random() < 0.5 else float(rng.uniform(-15, 15))
        dist, theta = float(rng.uniform(0.6, 2.0)) * size, float(rng.uniform(0, 2 * np.pi))
        to = (round(centre[0] + dist * np.cos(theta)), round(centre[1] + dist * np.sin(theta)))
        m = _affine_about(centre, to, angle, 1.0)
        moved = _lands(carry, m, free)
        if moved is not None:
            region = dilate(part, pad) | dilate(moved, pad)
            new = _moved_edges(edge, dilate(part, pad), [(dilate(part, pad), m)])
            return new, region, {"label": label, "angle": round(angle, 2), "matrix": _matrix(m)}
    return None


def plan_swap(edge, regions, foreground, rng, pad, **_):
    labels = _labels(regions)
    if len(labels) < 2:
        return None
    for _ in range(TRIES):
        a, b = (int(k) for k in rng.choice(labels, 2, replace=False))
        free = _free(regions, foreground, (a, b), pad)
        ca, cb = (tuple(float(round(v)) for v in np.argwhere(regions == k).mean(axis=0)[::-1]) for k in (a, b))
        ma, mb = _affine_about(ca, cb, 0.0, 1.0), _affine_about(cb, ca, 0.0, 1.0)
        moved_a, moved_b = _lands(_carry(regions, a), ma, free), _lands(_carry(regions, b), mb, free)
        if moved_a is None or moved_b is None:
            continue
        holes = dilate(np.isin(regions, (a, b)), pad)
        region = holes | dilate(moved_a | moved_b, pad)
        new = _moved_edges(edge, holes, [(dilate(regions == a, pad), ma), (dilate(regions == b, pad), mb)])
        return new, region, {"label": a, "other_label": b, "matrix": _matrix(ma), "other_matrix": _matrix(mb)}
    return None


def main_axis(footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid (x, y), unit main axis (x, y), projections of the footprint's pixels on it) of a bool mask,
    from the principal component of its pixel coordinates."""
    ys, xs = np.nonzero(footprint)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    centre = pts.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((pts - centre).T) if len(pts) > 2 else np.eye(2))
    axis = vecs[:, -1]
    return centre, axis, (pts - centre) @ axis


def stretch_matrix(axis: np.ndarray, anchor: np.ndarray, factor: float) -> np.ndarray:
    """2x3 affine map scaling by `factor` along the unit `axis`, fixing the point `anchor` (and the
    perpendicular direction)."""
    a = np.eye(2) + (factor - 1.0) * np.outer(axis, axis)
    return np.hstack([a, (anchor - a @ anchor)[:, None]])


def plan_resize(edge, regions, foreground, rng, pad, **_):
    label = _pick(regions, rng)
    if label is None:
        return None
    part = regions == label
    centre, axis, proj = main_axis(part)
    free = _free(regions, foreground, (label,), pad)
    for _ in range(TRIES):
        factor = float(rng.uniform(*(SHRINK if rng.random() < 0.5 else GROW)))
        end = int(rng.integers(3))   # fixed point: one end of the part (a fill level), its centre, the other end
        anchor = centre + axis * (proj.min(), 0.0, proj.max())[end]
        m = stretch_matrix(axis, anchor, factor)
        moved = _lands(part, m, free) if factor > 1 else _warp(part.astype(np.float32), m) > 0.5
        if moved is None or not moved.any():
            continue
        holes = dilate(part, pad)
        region = holes | dilate(moved, pad)
        new = _moved_edges(edge, holes, [(holes, m)])
        return new, region, {"label": label, "factor": round(factor, 4), "axis": [round(float(v), 5) for v in axis],
                             "matrix": _matrix(m)}
    return None


def _shape(footprint: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(area, elongation (major / minor axis std), centroid (x, y)) of a bool mask."""
    ys, xs = np.nonzero(footprint)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    vals = np.linalg.eigvalsh(np.cov(pts.T)) if len(pts) > 2 else np.ones(2)
    return float(len(pts)), float(np.sqrt(max(vals[-1], 1e-6) / max(vals[0], 1e-6))), pts.mean(axis=0)


def part_costs(regions: np.ndarray, label: int, other_regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels of `other_regions`, how unlike part `label` of `regions` each is): the difference of log area
    and log elongation, plus twice the centroid distance over the image diagonal, minus the overlap (IoU).
    Images of one category are aligned roughly or not at all, so overlap and place help where they can and
    shape decides otherwise."""
    labels = _labels(other_regions)
    part = regions == label
    area, elong, centre = _shape(part)
    diag = float(np.hypot(*regions.shape))
    costs = []
    for q in labels:
        other = other_regions == q
        a, e, c = _shape(other)
        iou = float((part & other).sum()) / float((part | other).sum())
        costs.append(abs(np.log(a / area)) + abs(np.log(e / elong)) + 2.0 * float(np.hypot(*(c - centre))) / diag
                     - iou)
    return labels, np.asarray(costs, np.float64)


def matching_part(regions: np.ndarray, label: int, other_regions: np.ndarray) -> int | None:
    """The label of `other_regions` that is the same part as `label` of `regions` (the least `part_costs`);
    None when it has no parts."""
    labels, costs = part_costs(regions, label, other_regions)
    return int(labels[int(np.argmin(costs))]) if len(labels) else None


def plan_recolour(edge, regions, other_regions, rng, pad, **_):
    label = _pick(regions, rng)
    if label is None or other_regions is None:
        return None
    match = matching_part(regions, label, other_regions)
    if match is None:
        return None
    return edge.astype(np.float32, copy=True), dilate(regions == label, pad), {"label": label, "other_label": match}


def plan_replace_part(edge, regions, foreground, other_edge, other_regions, rng, pad, **_):
    label = _pick(regions, rng)
    if label is None or other_regions is None or not other_regions.any():
        return None
    labels, costs = part_costs(regions, label, other_regions)
    unlike = labels[costs >= UNLIKE]          # another kind of part, not this part's twin
    if not len(unlike):
        return None
    other = int(unlike[rng.integers(len(unlike))])
    part, free = regions == label, _free(regions, foreground, (label,), pad)
    (cy, cx), (oy, ox) = np.argwhere(part).mean(axis=0), np.argwhere(other_regions == other).mean(axis=0)
    angle = float(rng.uniform(-180, 180))
    m = _affine_about((float(round(ox)), float(round(oy))), (float(round(cx)), float(round(cy))), angle, 1.0)
    moved = _lands(_carry(other_regions, other), m, free)
    if moved is None:
        return None
    holes = dilate(part, pad)
    region = holes | dilate(moved, pad)
    new = np.maximum(np.where(holes, 0.0, edge),
                     np.clip(_warp(np.where(dilate(other_regions == other, pad), other_edge, 0.0).astype(np.float32),
                                   m), 0, 1)).astype(np.float32)
    return new, region, {"label": label, "other_label": other, "angle": round(angle, 2), "matrix": _matrix(m)}


PLANNERS = {"remove_part": plan_remove_part, "move": plan_move, "swap": plan_swap, "resize": plan_resize,
            "recolour": plan_recolour, "replace_part": plan_replace_part}


def transfer_colour(image: np.ndarray, part: np.ndarray, other: np.ndarray, other_part: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3): `image` whose `part` pixels take the colour statistics of `other`'s `other_part`
    in Lab (L: mean shifted; a, b: mean and standard deviation matched; Reinhard et al. 2001, per channel)."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(other, cv2.COLOR_RGB2LAB).astype(np.float32)[other_part]
    px = lab[part]
    mean, ref_mean = px.mean(axis=0), ref.mean(axis=0)
    scale = np.ones(3, np.float32)
    scale[1:] = (ref.std(axis=0)[1:] + 1.0) / (px.std(axis=0)[1:] + 1.0)
    lab[part] = (px - mean) * scale + ref_mean
    out = cv2.cvtColor(np.clip(np.round(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return np.where(part[..., None], out, image).astype(np.float32)


def _layer(normal: np.ndarray, regions: np.ndarray, foreground: np.ndarray, edit: Edit,
           other: tuple[np.ndarray, np.ndarray] | None, pad: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(painted float32 image, footprints bool) of a part edit."""
    p = edit.params
    labels = [p["label"]] + ([p["other_label"]] if edit.strategy == "swap" else [])
    parts = np.isin(regions, labels)
    if edit.strategy == "recolour":
        if other is None:
            raise ValueError("recolour needs the other normal image and its regions")
        return transfer_colour(normal, regions == p["label"], other[0], other[1] == p["other_label"]), parts
    carrier = _free(regions, foreground, tuple(int(k) for k in labels), pad) & ~dilate(parts, pad)
    out = fill_hole(normal, dilate(parts, pad), carrier)
    if edit.strategy == "remove_part":
        return out, parts
    pixels, owner, keys = normal, regions, ["matrix"] + (["other_matrix"] if edit.strategy == "swap" else [])
    if edit.strategy == "replace_part":      # the other image's part, moved onto this one's place
        if other is None:
            raise ValueError("replace_part needs the other normal image and its regions")
        pixels, owner, labels = other[0], other[1], [p["other_label"]]
    moved_all = np.zeros_like(parts)
    for label, key in zip(labels, keys, strict=True):
        m = np.asarray(p[key], np.float64)
        source = owner == label if edit.strategy == "resize" else _carry(owner, label)
        alpha = np.clip(_warp(source.astype(np.float32), m), 0.0, 1.0)[..., None]
        moved = cv2.warpAffine(pixels, m, (pixels.shape[1], pixels.shape[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        out = out * (1.0 - alpha) + moved * alpha
        moved_all |= alpha[..., 0] > 0.5
    return out, parts | moved_all


def paint_part(normal: np.ndarray, regions: np.ndarray, foreground: np.ndarray, edit: Edit,
               other: tuple[np.ndarray, np.ndarray] | None = None, feather: int | None = None) -> Composed:
    """The anomaly image and its honest mask for a part edit (`edit.strategy` in PARTS).

    `normal` uint8 (H, W, 3), `regions` uint16 (H, W) (the labels the edit was planned on), `foreground` bool;
    `other` = (image, regions) of the other normal image (recolour only). Only pixels of `edit.region` change;
    reason "empty_mask" when under MIN_VISIBLE of the footprints visibly changed. ValueError for another
    strategy or a recolour without `other`.
    """
    if edit.strategy not in PARTS:
        raise ValueError(f"{edit.strategy!r} is not a part strategy ({', '.join(PARTS)})")
    sizes = default_sizes(normal.shape[:2])
    feather = sizes["feather"] if feather is None else feather
    pad = max(2, round(3 * min(normal.shape[:2]) / 256))
    layer, footprints = _layer(normal, regions, foreground, edit, other, pad)
    region = edit.region
    layer = np.where(region[..., None], np.clip(layer, 0, 255), normal.astype(np.float32))
    moved = lab_distance(np.round(layer).astype(np.uint8), normal)
    visible = region & (moved >= np.maximum(VISIBLE_JND * jnd_map(normal), MIN_STEP))
    visible = clean_mask(visible, sizes["min_area"], sizes["hole_area"]) & region
    footprints &= region
    if visible.sum() < max(sizes["min_area"], MIN_VISIBLE * footprints.sum()):
        return Composed(normal.copy(), np.zeros(normal.shape[:2], bool), "empty_mask")
    mask = visible | footprints
    return Composed(paste(normal, layer, mask, feather), mask, None)

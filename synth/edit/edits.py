"""Edge-map edits (method.md step 4): the logical strategies of LogicAL and our structural ones.

E_j is the normal image's edge map (edge = 1), E_i another normal image's, M the region, A a random shift /
scale / rotation (+ TPS) of E_i:
  remove  E_A = (1 - M) E_j                        a part goes missing (logical)
  replace E_A = M A(E_i) + (1 - M) E_j             a part is swapped for another image's part (logical)
  merge   E_A = M max(A(E_i), E_j) + (1 - M) E_j   another image's part is added (logical)
  stroke  a crack or scratch on one surface (structural, ours; painted, see below)
  jitter  local elastic (TPS) displacement of the edges inside M (structural, ours)
  chip    a bite out of a part's outline showing what lies behind it, or a pit (structural, ours; painted)
  warp    a TPS bend of a whole component and its surroundings (structural; MAD-Sim extra)
  colour  the edges stay; the pixels inside M get a Lab colour shift (structural; VisA extra). The
          generator cannot show a colour change from an unchanged edge map, so for this strategy the caller
          renders nothing: render_a = apply_colour(normal, edit.region, edit.params) and render_n = normal
          go to compose (`synth.pipeline.finish_sample` does this).
stroke and chip are painted on the normal pixels by `synth.edit.damage` (no generator call, whatever its kind:
a small generator renders them as smooth smears); their Edit.edge draws the damage for previews.
For replace/merge, A brings a whole *component* of E_i (its edges only: one region of E_i's label map) onto
the target, so an extra or wrong part appears as a complete part, not as a patch of clutter; without E_i's
regions an edge-dense patch of E_i is moved instead. Every random choice comes from the `rng` passed in.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from synth.edit.geometry import _pad, bbox_of, dilate
from synth.edit.warp import tps_maps

MIN_EDGE_PX = 12.0  # an edit must move at least this much edge mass (pixels at full strength) to be visible


@dataclass
class Edit:
    """One planned edit: the anomaly edge map, the region it may change (the target), and how it was made."""

    edge: np.ndarray  # float32 (H, W) in [0, 1]
    region: np.ndarray  # bool (H, W); edge differs from the normal edge map only inside it
    kind: str  # "logical" | "structural"
    strategy: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of region (x1, y1 exclusive)
    params: dict = field(default_factory=dict)  # json-serialisable description of the random choices


def _edge_mass(edge: np.ndarray, mask: np.ndarray) -> float:
    return float(edge[mask].sum())


def _affine_about(src_xy: tuple[float, float], dst_xy: tuple[float, float], angle: float,
                  scale: float) -> np.ndarray:
    """2x3 matrix rotating/scaling about `src_xy` and moving it to `dst_xy`."""
    m = cv2.getRotationMatrix2D((float(src_xy[0]), float(src_xy[1])), angle, scale)
    m[:, 2] += np.array(dst_xy, np.float64) - np.array(src_xy, np.float64)
    return m


def _warp(img: np.ndarray, m: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _local_tps(edge: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, grid: int,
               shift: float) -> tuple[np.ndarray, float]:
    """Edge map with a TPS applied inside `box` only: lattice borders fixed, interior points moved by up to
    `shift` x the box's short side. Returns the warped map and the largest control-point displacement (px)."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    gx, gy = np.meshgrid(np.linspace(0, w - 1, grid), np.linspace(0, h - 1, grid))
    dst = np.stack([gx.ravel(), gy.ravel()], axis=1)
    inner = ((gx > 0) & (gx < w - 1) & (gy > 0) & (gy < h - 1)).ravel()
    moves = rng.uniform(-shift, shift, size=dst.shape) * min(h, w)
    moves[~inner] = 0.0
    # TPS is smooth: solve it on a 4x coarser lattice of pixels and interpolate the maps up.
    ch, cw = max(2, (h + 3) // 4), max(2, (w + 3) // 4)
    fy, fx = (ch - 1) / max(h - 1, 1), (cw - 1) / max(w - 1, 1)
    coarse = tps_maps((ch, cw), dst * [fx, fy], dst * [fx, fy] + moves * [fx, fy])
    maps = tuple(cv2.resize(c / f, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
                 for c, f in zip(coarse, (fx, fy), strict=True))
    out = edge.copy()
    crop = np.ascontiguousarray(edge[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = cv2.remap(crop, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out, float(np.abs(moves).max())


def plan_remove(edge, target, **_):
    region = target.mask
    if _edge_mass(edge, region) < MIN_EDGE_PX:
        return None
    return np.where(region, 0.0, edge).astype(np.float32), region, {}


def _pick_other_part(other_edge: np.ndarray, other_regions: np.ndarray | None, rng: np.random.Generator,
                     pad: int) -> tuple[np.ndarray, tuple[float, float], dict] | None:
    """Edges of one component of E_i (or an edge-dense patch) and the point to move onto the target."""
    if other_regions is not None and other_regions.any():
        labels = np.flatnonzero(np.bincount(other_regions.ravel())[1:]) + 1
        k = int(labels[rng.integers(len(labels))])
        part = dilate(other_regions == k, pad)
        content = np.where(part, other_edge, 0.0).astype(np.float32)
        if content.sum() < MIN_EDGE_PX:
            return None
        ys, xs = np.nonzero(part)
        return content, (float(xs.mean()), float(ys.mean())), {"other_label": k}
    ys, xs = np.nonzero(other_edge > 0.5)
    if len(ys) == 0:
        return None
    i = int(rng.integers(len(ys)))
    point = (float(xs[i]), float(ys[i]))
    return other_edge.astype(np.float32), point, {"other_point": [int(xs[i]), int(ys[i])]}


def _moved_part(edge, target, other_edge, other_regions, rng, pad, offset: float):
    picked = _pick_other_part(other_edge, other_regions, rng, pad)
    if picked is None:
        return None
    content, src, params = picked
    ys, xs = np.nonzero(target.mask)
    spread = offset * np.array([np.ptp(xs) + 1, np.ptp(ys) + 1])
    jump = rng.uniform(-1, 1, size=2) * spread
    dst = (float(xs.mean() + jump[0]), float(ys.mean() + jump[1]))
    angle, scale = float(rng.uniform(-180, 180)), float(rng.uniform(0.8, 1.2))
    moved = np.clip(_warp(content, _affine_about(src, dst, angle, scale)), 0.0, 1.0)
    params |= {"angle": angle, "scale": scale, "to": [round(dst[0], 1), round(dst[1], 1)]}
    return moved, params


def plan_replace(edge, target, other_edge, other_regions, rng, pad, **_):
    got = _moved_part(edge, target, other_edge, other_regions, rng, pad, offset=0.0)
    if got is None:
        return None
    moved, params = got
    if other_regions is not None and other_regions.any():
        region = target.mask | dilate(moved > 0.05, pad)  # the old part goes, the whole new part comes
    else:
        region = target.mask
    new = np.where(region, moved, edge).astype(np.float32)
    if float(np.abs(new - edge)[region].sum()) < MIN_EDGE_PX:
        return None
    return new, region, params


def plan_merge(edge, target, other_edge, other_regions, rng, pad, **_):
    got = _moved_part(edge, target, other_edge, other_regions, rng, pad, offset=0.5)
    if got is None:
        return None
    moved, params = got
    if other_regions is not None and other_regions.any():
        region = dilate(moved > 0.05, pad)  # an extra part: where its edges land
    else:
        region = target.mask
    new = np.where(region, np.maximum(moved, edge), edge).astype(np.float32)
    if float((new - edge)[region].sum()) < MIN_EDGE_PX:
        return None
    return new, region, params


def plan_jitter(edge, target, rng, **_):
    region = target.mask
    if _edge_mass(edge, region) < MIN_EDGE_PX:
        return None
    box = _pad(bbox_of(region), 2, edge.shape)
    warped, moved = _local_tps(edge, box, rng, grid=5, shift=float(rng.uniform(0.06, 0.12)))
    new = np.where(region, warped, edge).astype(np.float32)
    if float(np.abs(new - edge).sum()) < MIN_EDGE_PX:
        return None
    return new, region, {"max_shift_px": round(moved, 2)}


def plan_warp(edge, target, rng, pad, **_):
    if _edge_mass(edge, target.mask) < MIN_EDGE_PX:
        return None
    x0, y0, x1, y1 = bbox_of(target.mask)
    margin = max(pad, int(0.2 * max(x1 - x0, y1 - y0)))
    box = _pad((x0, y0, x1, y1), margin, edge.shape)
    warped, moved = _local_tps(edge, box, rng, grid=3, shift=float(rng.uniform(0.12, 0.25)))
    changed = np.zeros(edge.shape, bool)
    bx0, by0, bx1, by1 = box
    changed[by0:by1, bx0:bx1] = np.abs(warped[by0:by1, bx0:bx1] - edge[by0:by1, bx0:bx1]) > 0.05
    region = dilate(changed, 2)
    new = np.where(region, warped, edge).astype(np.float32)
    if float(np.abs(new - edge).sum()) < MIN_EDGE_PX:
        return None
    return new, region, {"max_shift_px": round(moved, 2)}


def plan_colour(edge, target, rng, **_):
    magnitude = float(rng.uniform(12.0, 30.0))
    theta = float(rng.uniform(0, 2 * np.pi))
    params = {"dL": round(float(rng.uniform(-20.0, 20.0)), 2), "da": round(magnitude * np.cos(theta), 2),
              "db": round(magnitude * np.sin(theta), 2)}
    return edge.astype(np.float32, copy=True), target.mask, params


def apply_colour(image: np.ndarray, region: np.ndarray, params: dict) -> np.ndarray:
    """The colour edit's pixels: `image` with its Lab colour shifted by (dL, da, db) inside `region`."""
    out = image.copy()
    box = bbox_of(region)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab += np.array([params["dL"] * 255.0 / 100.0, params["da"], params["db"]], np.float32)
    shifted = cv2.cvtColor(np.clip(np.round(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    inside = region[y0:y1, x0:x1]
    out[y0:y1, x0:x1][inside] = shifted[inside]
    return out

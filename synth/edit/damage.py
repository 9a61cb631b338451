"""Structural damage painted on the normal image itself (ours): cracks, scratches and chips.

Why not the generator: a small edge-to-image generator renders a stroke as a smooth smear and a chip as a
blurred blob, and a localizer trained on those learns "smooth patch" or "bent outline", not damage (issue 16:
on real cracked-texture photos AUPRO 33 against Perlin's 82, the maps fired on object outlines). Real damage
changes the *surface* and keeps its texture, so these edits change the normal pixels directly, by amounts
relative to the local luminance and the JND map (Yang et al. 2005, `synth.features.jnd`: visible on a dark and on a
bright surface alike), and the generator is not called (like the colour edit):

- crack (`stroke`, style "crack"): a jagged random-walk polyline, sometimes branched; 1-2 px core darkened by
  several JNDs, a rim lit on the wall facing a random light and shaded on the other (the groove's walls,
  an emboss of the core's profile); multiplicative, so the texture under it stays;
- scratch (`stroke`, style "scratch"): a thin line (sometimes with a shorter companion), bright (worn to bare
  material) or dark, following one surface (a part, or the carrier around the parts) and clipped to it;
- chip (`chip`): a jagged bite out of a part's (or the object's) outline that shows what lies behind it (the
  carrier or background next to it, copied with its texture from just outside the outline), with a shaded
  broken edge and a thin cast shadow; where nothing lies behind (the object fills the frame) a pit with a lit
  and a shaded rim.

Planning (random choices, drawn from the edit's rng and kept json-serialisable in `Edit.params`) happens in
`plan_stroke` / `plan_chip`; painting (`paint_damage`) is a pure function of the normal image and the edit.
The edit's edge map draws the damage (crack lines, the chip's new outline and the copied background's edges)
for the preview; training targets are the normal image's maps, which the damage does not change.

Label: the pixels whose colour (Lab) moved by at least half a JND (or 2 levels), inside the edit region,
cleaned of specks; `synth.edit.compose.paste` blends the painted image in through that mask's feather, so every
changed pixel lies within the feather and beyond it the anomaly equals the normal image bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.edit.compose import Composed, clean_mask, default_sizes, lab_distance, paste
from synth.edit.edits import MIN_EDGE_PX, Edit
from synth.edit.geometry import bbox_of, dilate
from synth.features.jnd import jnd_map, luminance

DAMAGE = ("stroke", "chip")  # strategies painted here (synth.edit.strategies.PAINTED adds colour, painted there)
VISIBLE_JND = 0.5  # a pixel is labelled when its colour moved by this many JNDs (and >= MIN_STEP levels)
MIN_STEP = 2.0
UPSAMPLE = 4  # polylines are rasterised this much finer for sub-pixel distances (anti-aliased profiles)


# ---------------------------------------------------------------- planning


def _component_at(mask: np.ndarray, y: int, x: int) -> np.ndarray:
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels == labels[y, x]


def _surface(regions: np.ndarray | None, foreground: np.ndarray, rng: np.random.Generator,
             part_p: float) -> tuple[np.ndarray, str]:
    """One surface to damage. Where the semantic regions are parts lying on a carrier (the carrier, the
    foreground without them, is >= 5% of it): a part (the connected component of the regions around a
    random part pixel) with probability `part_p`, else the carrier. Otherwise (one object cut into cells,
    or no regions) the whole foreground, "object"."""
    parts = regions > 0 if regions is not None else np.zeros_like(foreground)
    carrier = foreground & ~dilate(parts, 1)
    if parts.any() and carrier.sum() >= 0.05 * foreground.sum():
        if rng.random() < part_p:
            ys, xs = np.nonzero(parts)
            k = int(rng.integers(len(ys)))
            return _component_at(parts, ys[k], xs[k]), "part"
        return carrier, "carrier"
    return foreground.copy(), "object"


def _walk(start: np.ndarray, heading: float, steps: int, step: tuple[float, float], turn: float,
          rng: np.random.Generator) -> np.ndarray:
    pts = [start.astype(np.float64)]
    for _ in range(steps):
        heading += rng.uniform(-turn, turn)
        pts.append(pts[-1] + rng.uniform(*step) * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(pts)


def _crack_lines(start, short, rng) -> list[np.ndarray]:
    main = _walk(start, rng.uniform(0, 2 * np.pi), int(rng.integers(4, 11)), (0.02 * short, 0.05 * short),
                 0.55, rng)
    lines = [main]
    if rng.random() < 0.4 and len(main) > 3:  # a branch from an inner vertex
        j = int(rng.integers(1, len(main) - 1))
        d = main[j + 1] - main[j]
        heading = float(np.arctan2(d[1], d[0])) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        lines.append(_walk(main[j], heading, int(rng.integers(2, 5)), (0.015 * short, 0.04 * short), 0.5, rng))
    return lines


def _scratch_lines(start, short, rng) -> list[np.ndarray]:
    heading, bend = rng.uniform(0, 2 * np.pi), rng.uniform(-0.08, 0.08)
    length = rng.uniform(0.08, 0.25) * short
    t = np.linspace(-0.5, 0.5, 8)[:, None] * length
    angle = heading + bend * np.linspace(-4, 4, 8)[:, None]   # a gentle arc
    base = start + t * np.hstack([np.cos(angle), np.sin(angle)])
    normal = np.array([-np.sin(heading), np.cos(heading)])
    lines = [base]
    if rng.random() < 0.35:  # a scrape: a shorter near-parallel companion
        offset = rng.uniform(1.5, 2.5) * normal + rng.normal(0, 0.3, (8, 2))
        cut = rng.uniform(0.1, 0.45, 2)
        lines.append((base + offset)[int(cut[0] * 8): 8 - int(cut[1] * 8)])
    return [line for line in lines if len(line) >= 2]


def _raster(lines: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    for line in lines:
        cv2.polylines(canvas, [np.round(line).astype(np.int32)], False, 255, 1, cv2.LINE_8)
    return canvas > 0


def plan_stroke(edge: np.ndarray, foreground: np.ndarray, regions: np.ndarray | None, rng: np.random.Generator,
                pad: int, **_) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """A crack or scratch on one surface: (edited edge map, region, params) or None (too little edge)."""
    h, w = edge.shape
    surface, where = _surface(regions, foreground, rng, part_p=0.5)
    inner = cv2.erode(surface.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inner if inner.any() else surface)
    i = int(rng.integers(len(ys)))
    start = np.array([xs[i], ys[i]], np.float64)
    style = "crack" if rng.random() < 0.6 else "scratch"
    lines = [np.round(ln, 2) for ln in (_crack_lines if style == "crack" else _scratch_lines)(start, min(h, w), rng)]
    stroke = _raster(lines, (h, w)) & surface
    region = dilate(stroke, pad) & dilate(surface, 1)
    new = np.where(region, np.maximum(edge, stroke.astype(np.float32)), edge).astype(np.float32)
    if float(stroke.sum()) < MIN_EDGE_PX:
        return None
    params = {"style": style, "surface": where, "lines": [ln.tolist() for ln in lines],
              "light": round(float(rng.uniform(0, 2 * np.pi)), 3), "strength": round(float(rng.uniform(0, 1)), 3),
              "width": round(float(rng.uniform(0.55, 1.0) if style == "crack" else rng.uniform(0.45, 0.7)), 3),
              "tone": round(float(rng.random()), 3), "noise": int(rng.integers(2**31))}
    return new, region, params


def _jagged(centre: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(7, 13))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.55, 1.15, n)
    return centre + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _fill(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], 1)
    return canvas.astype(bool)


def _behind_shift(chip: np.ndarray, obj: np.ndarray, behind: np.ndarray, point: np.ndarray, radius: float,
                  ) -> list[int] | None:
    """Integer shift (dx, dy) that lands the chip on what lies behind the object (>= 90% `behind`, inside
    the image, clear of the object), reached from the outline at `point` over `behind` (or the object)
    only, so the copy is what continues behind the break; None when there is none."""
    h, w = obj.shape
    soft = cv2.GaussianBlur(obj.astype(np.float32), (0, 0), max(1.0, radius / 2))
    x, y = int(round(point[0])), int(round(point[1]))
    gy, gx = (g[y, x] for g in np.gradient(soft))
    base = np.arctan2(-gy, -gx) if gx or gy else 0.0  # outward: down the object's mask
    ys, xs = np.nonzero(chip)
    clear = behind & ~dilate(obj, 1)
    for length in (1.5, 2.2, 3.0):
        for turn in (0.0, 0.4, -0.4, 0.8, -0.8):
            a = base + turn
            dx, dy = (int(round(length * radius * np.cos(a))), int(round(length * radius * np.sin(a))))
            tx, ty = xs + dx, ys + dy
            if tx.min() < 0 or ty.min() < 0 or tx.max() >= w or ty.max() >= h:
                continue
            path = np.round(point + np.linspace(0, 1, 12)[:, None] * [dx, dy]).astype(int)
            if path.min() < 0 or (path[:, 0] >= w).any() or (path[:, 1] >= h).any():
                continue  # the way there leaves the image (an object touching the border): nothing behind
            if (behind | obj)[path[:, 1], path[:, 0]].all() and clear[ty, tx].mean() >= 0.9:
                return [dx, dy]
    return None


def plan_chip(edge: np.ndarray, foreground: np.ndarray, regions: np.ndarray | None, rng: np.random.Generator,
              pad: int, **_) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """A bite out of a part's or the object's outline (showing what lies behind it), or a pit where the
    object has no outline to break: (edited edge map, region, params) or None."""
    h, w = edge.shape
    surface, where = _surface(regions, foreground, rng, part_p=0.7)
    if where == "carrier":  # a chip breaks a thing: the carrier's outline is the whole object's
        surface, where = foreground.copy(), "object"
    ys, xs = np.nonzero(surface)
    k = int(rng.integers(len(ys)))
    obj = _component_at(surface, ys[k], xs[k])
    behind = (foreground & ~(regions > 0)) if where == "part" else ~foreground  # the carrier, or background
    outline = obj & dilate(behind, 1)
    radius = float(np.clip(rng.uniform(0.25, 0.5) * np.sqrt(obj.sum() / np.pi), 2.5, 0.07 * min(h, w)))
    # the visible outline: edge pixels near the region's border (a part's label may reach past the part)
    seen = obj & (edge > 0.5) & dilate(outline, 3)
    oy, ox = np.nonzero(seen if seen.any() else outline)
    shift = None
    for _ in range(4 if len(oy) else 0):
        j = int(rng.integers(len(oy)))
        centre = np.array([ox[j], oy[j]], np.float64)
        poly = np.round(_jagged(centre, radius, rng), 2)
        chip = _fill(poly, (h, w)) & obj
        if chip.any():
            shift = _behind_shift(chip, obj, behind, centre, radius)
        if shift is not None:
            break
    if shift is None:  # nothing behind within reach: a pit inside the object
        inner = cv2.erode(obj.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        oy, ox = np.nonzero(inner if inner.any() else obj)
        j = int(rng.integers(len(oy)))
        poly = np.round(_jagged(np.array([ox[j], oy[j]], np.float64), 0.7 * radius, rng), 2)
        chip = _fill(poly, (h, w)) & obj
    if chip.sum() < 4:
        return None
    region = dilate(chip, max(2, pad)) & obj
    new = edge.copy()
    if shift is not None:  # what lies behind, with its edges; the broken outline is a new edge
        cy, cx = np.nonzero(chip)
        new[cy, cx] = edge[cy + shift[1], cx + shift[0]]
    broken = dilate(chip, 1) & obj & ~chip
    new[broken] = 1.0
    if float(np.abs(new - edge).sum()) < MIN_EDGE_PX:
        return None
    params = {"surface": where, "polygon": poly.tolist(), "behind": shift,
              "light": round(float(rng.uniform(0, 2 * np.pi)), 3), "strength": round(float(rng.uniform(0, 1)), 3),
              "noise": int(rng.integers(2**31))}
    return new.astype(np.float32), region, params


# ---------------------------------------------------------------- painting


def _line_distance(lines: list, shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """float32 (h, w): distance (px) from each pixel centre of a crop at `origin` (x0, y0) to the polylines."""
    h, w = shape
    up = UPSAMPLE
    canvas = np.full((h * up, w * up), 255, np.uint8)
    for line in lines:
        pts = (np.asarray(line, np.float64) - origin) * up + (up - 1) / 2.0
        cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 0, 1, cv2.LINE_8, 4)
    dist = cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (dist[up // 2::up, up // 2::up] / up).astype(np.float32)


def _roughness(seed: int, shape: tuple[int, int], low: float) -> np.ndarray:
    """Smooth multiplicative noise in [low, 1] (a crack is not equally deep everywhere)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (max(2, shape[0] // 4), max(2, shape[1] // 4))).astype(np.float32)
    return low + (1 - low) * cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _emboss(height: np.ndarray, light: float) -> np.ndarray:
    """Shading of a relief `height` lit from angle `light`: +1 where it faces the light, -1 away."""
    gy, gx = np.gradient(height)
    shade = -(gx * np.cos(light) + gy * np.sin(light))
    peak = float(np.abs(shade).max())
    return shade / peak if peak > 0 else shade


def _stroke_layer(img: np.ndarray, y: np.ndarray, jnd: np.ndarray, p: dict, origin) -> np.ndarray:
    d = _line_distance(p["lines"], y.shape, origin)
    local = cv2.GaussianBlur(y, (0, 0), 2.0)
    rough = _roughness(p["noise"], y.shape, 0.55 if p["style"] == "crack" else 0.8)[..., None]
    width = p["width"]
    core = np.exp(-((d / width) ** 2))[..., None]
    if p["style"] == "crack":  # a groove: darker core, one wall lit and one shaded
        depth = np.clip(np.maximum((3 + 2 * p["strength"]) * jnd, (0.3 + 0.25 * p["strength"]) * local)
                        / np.maximum(local, 1.0), 0.15, 0.85)[..., None]
        rim = _emboss(-np.exp(-((d / (width + 1.2)) ** 2)), p["light"])[..., None]
        return img * (1 - depth * core * rough) + (1 + p["strength"]) * jnd[..., None] * rim * rough
    bright = p["tone"] < (0.75 if float(local.mean()) < 110 else 0.3)
    if bright:  # worn to bare (lighter) material
        a = np.clip(np.maximum(3.5 * jnd / np.maximum(255 - local, 1.0), 0.25 + 0.3 * p["strength"]), 0, 0.8)
        return img + a[..., None] * core * rough * (255.0 - img)
    a = np.clip(np.maximum(3.5 * jnd / np.maximum(local, 1.0), 0.3 + 0.3 * p["strength"]), 0, 0.8)
    return img * (1 - a[..., None] * core * rough)


def _chip_layer(img: np.ndarray, full: np.ndarray, jnd: np.ndarray, region: np.ndarray, p: dict,
                origin) -> np.ndarray:
    x0, y0 = origin
    h, w = region.shape
    chip = _fill(np.asarray(p["polygon"]) - origin, (h, w)) & region
    rough = _roughness(p["noise"], (h, w), 0.6)[..., None]
    light = (np.cos(p["light"]), np.sin(p["light"]))
    out = img.copy()
    if p["behind"] is not None:  # what lies behind the part, texture and all
        dx, dy = p["behind"]
        cy, cx = np.nonzero(chip)
        out[cy, cx] = full[cy + y0 + dy, cx + x0 + dx]
        # where the copy really shows something else (a part's label may reach onto the carrier)
        exposed = chip & (np.abs(luminance(np.clip(out, 0, 255).astype(np.uint8))
                                 - luminance(img.astype(np.uint8))) > jnd)
        remaining = (region & ~chip).astype(np.float32)
        # the broken face: lit where it faces the light, shaded where not
        shade = _emboss(cv2.GaussianBlur(remaining, (0, 0), 0.8), p["light"])
        band = (region & ~chip & dilate(exposed, 2)).astype(np.float32)
        out = out + ((1.5 + 2 * p["strength"]) * jnd * shade * band)[..., None] * rough
        # the part's cast shadow on what is now exposed, away from the light
        moved = cv2.warpAffine(remaining, np.float32([[1, 0, -1.5 * light[0]], [0, 1, -1.5 * light[1]]]),
                               (w, h), flags=cv2.INTER_LINEAR)
        shadow = cv2.GaussianBlur(moved, (0, 0), 0.7) * exposed
        return out * (1 - (0.2 + 0.2 * p["strength"]) * shadow[..., None])
    height = cv2.GaussianBlur(chip.astype(np.float32), (0, 0), 0.9)
    local = cv2.GaussianBlur(luminance(np.clip(img, 0, 255).astype(np.uint8)), (0, 0), 2.0)
    depth = np.clip(np.maximum(2 * jnd, (0.15 + 0.15 * p["strength"]) * local) / np.maximum(local, 1.0),
                    0.1, 0.5)[..., None]
    out = out * (1 - depth * height[..., None] * rough)
    return out + (2 + p["strength"]) * jnd[..., None] * _emboss(-height, p["light"])[..., None]


def paint_damage(normal: np.ndarray, edit: Edit, feather: int | None = None) -> Composed:
    """The anomaly image and its honest mask for a painted edit (`edit.strategy` in DAMAGE).

    `normal` is uint8 (H, W, 3); returns `synth.edit.compose.Composed` (anomaly uint8, mask bool, reason None or
    "empty_mask" when nothing visible changed). Only pixels of `edit.region` are painted; the label is where
    the colour moved by >= VISIBLE_JND x JND (and >= MIN_STEP levels, Lab distance) there.
    """
    sizes = default_sizes(normal.shape[:2])
    feather = sizes["feather"] if feather is None else feather
    box = bbox_of(edit.region)
    if box is None:
        return Composed(normal.copy(), np.zeros(normal.shape[:2], bool), "no_region")
    h, w = normal.shape[:2]
    m = feather + 3
    x0, y0, x1, y1 = max(0, box[0] - m), max(0, box[1] - m), min(w, box[2] + m), min(h, box[3] + m)
    crop = (slice(y0, y1), slice(x0, x1))
    jnd = jnd_map(normal)[crop]
    img = normal[crop].astype(np.float32)
    region = edit.region[crop]
    if edit.strategy == "stroke":
        layer = _stroke_layer(img, luminance(normal[crop]), jnd, edit.params, (x0, y0))
    elif edit.strategy == "chip":
        layer = _chip_layer(img, normal, jnd, region, edit.params, (x0, y0))
    else:
        raise ValueError(f"{edit.strategy!r} is not a painted strategy ({', '.join(DAMAGE)})")
    layer = np.where(region[..., None], np.clip(layer, 0, 255), img)
    moved = lab_distance(np.round(layer).astype(np.uint8), normal[crop])
    visible = region & (moved >= np.maximum(VISIBLE_JND * jnd, MIN_STEP))
    local = clean_mask(visible, sizes["min_area"], sizes["hole_area"]) & region
    mask = np.zeros((h, w), bool)
    if not local.any():
        return Composed(normal.copy(), mask, "empty_mask")
    anomaly = normal.copy()
    anomaly[crop] = paste(normal[crop], layer, local, feather)
    mask[crop] = local
    return Composed(anomaly, mask, None)

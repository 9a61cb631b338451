"""Scene code every toybox category shares: parts, scenes, placement without touching, damage, painting.

A category module (toybox_tray, toybox_bag) says where parts go and which rule they obey; this module knows
how a part is drawn, whether it fits, how a defect is added with its ground-truth region and how a scene is
painted. Ground truth follows MVTec LOCO: one PNG per defect region carrying the defect's pixel value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw
from synth.rng import sample_rng

GAP_PX = 5  # free pixels kept between parts (and 3 px to the walls) so parts stay countable


COUNTS = {"train": 60, "validation": 10, "good": 20, "logical_anomalies": 24, "structural_anomalies": 24}


# name -> (pixel value, saturation threshold, relative?); logical: absolute pixels, structural: relative 1.0
DEFECTS = {"missing_part": (255, 250, False), "extra_part": (254, 250, False),
           "wrong_part": (253, 300, False), "misplaced_part": (252, 250, False),
           "scratch": (251, 1.0, True), "stain": (250, 1.0, True), "broken_part": (249, 1.0, True)}


@dataclass(frozen=True)
class Part:
    """One part on the tray, in tray coordinates (origin at the tray centre)."""

    kind: str
    compartment: str
    pose: draw.Pose
    chunk: tuple[float, ...] | None = None  # broken: (angle of the cut on the outline, radius, jag seed)


@dataclass
class Scene:
    """Everything an image shows, before rendering; anomalies edit it and add their regions."""

    tray: draw.Pose
    half: tuple[float, float]
    parts: list[Part]
    render_seed: int
    colours: dict[str, tuple[float, float, float]]
    # ("scratch", pts, colour, clip) or ("stain", alpha, colour)
    marks: list[tuple] = field(default_factory=list)
    regions: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (defect name, bool mask)


def drawing(scene: Scene, part: Part) -> draw.PartDrawing:
    """A part in image coordinates."""
    def to_image(pts: np.ndarray) -> np.ndarray:
        return scene.tray.apply(part.pose.apply(pts))

    outer, holes = draw.outline(part.kind)
    chunk = None
    if part.chunk is not None:
        angle, radius, jag = part.chunk
        jr = np.random.default_rng(int(jag))
        centre = outer[int(angle) % len(outer)]
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        r = radius * jr.uniform(0.7, 1.2, t.size)
        chunk = to_image(np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1))
    lines = [(to_image(p), f) for p, f in draw.details(part.kind)]
    return draw.PartDrawing(part.kind, to_image(outer), [to_image(h) for h in holes], lines,
                            scene.colours[part.kind], chunk)


def fits(scene: Scene, part: Part, rect: tuple[float, float, float, float], others: list[Part]) -> bool:
    """True when `part` lies 3 px inside `rect` (tray coordinates) and GAP_PX away from every other part."""
    u0, v0, u1, v1 = rect
    outer = part.pose.apply(draw.outline(part.kind)[0])
    if outer[:, 0].min() < u0 + 3 or outer[:, 0].max() > u1 - 3 or outer[:, 1].min() < v0 + 3 \
            or outer[:, 1].max() > v1 - 3:
        return False
    mine = draw.fill(scene.tray.apply(outer)) > 0
    mine = cv2.dilate(mine.astype(np.uint8), np.ones((2 * GAP_PX + 1,) * 2, np.uint8)) > 0
    return not any((mine & draw.footprint(drawing(scene, o))).any() for o in others)


def place_in(scene: Scene, kind: str, letter: str, rect: tuple[float, float, float, float], others: list[Part],
             rng: np.random.Generator, pose, tries: int = 200) -> Part | None:
    """A part of `kind` at a free random spot of `rect` drawn by `pose(kind, rect, rng)`, or None."""
    for _ in range(tries):
        part = Part(kind, letter, pose(kind, rect, rng))
        if fits(scene, part, rect, others):
            return part
    return None


def tinted_colours(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Each part kind's base colour (draw.COLOURS) with a random gain and tint, RGB floats in [0, 255]."""
    colours = {}
    for kind, colour in draw.COLOURS.items():
        tinted = np.array(colour) * rng.uniform(0.9, 1.08) * rng.uniform(0.97, 1.03, 3)
        colours[kind] = tuple(float(c) for c in np.clip(tinted, 0, 255))
    return colours


def place_all(kinds, place_one) -> list[Part]:
    """One part per entry of `kinds`, each from `place_one(kind, parts placed so far)`; when that gives None
    the whole group starts over (same RNG stream), until every part found room."""
    while True:
        parts: list[Part] = []
        for kind in kinds:
            part = place_one(kind, parts)
            if part is None:
                break
            parts.append(part)
        if len(parts) == len(kinds):
            return parts


def _dilated(mask: np.ndarray, px: int = 2) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


def part_footprint(scene: Scene, part: Part) -> np.ndarray:
    return _dilated(draw.footprint(drawing(scene, part)))


def remove_one(scene: Scene, defect: str, rng: np.random.Generator) -> tuple[Part, list[Part]]:
    """Draw a random part: (it, the others). For `missing_part` it is taken out and its region recorded."""
    i = int(rng.integers(len(scene.parts)))
    victim, rest = scene.parts[i], scene.parts[:i] + scene.parts[i + 1:]
    if defect == "missing_part":
        scene.parts = rest
        scene.regions.append((defect, part_footprint(scene, victim)))
    return victim, rest


def damage(scene: Scene, defect: str, i: int, body: np.ndarray, surface: np.ndarray, on_part: bool,
           floor_colour: tuple[float, float, float], rng: np.random.Generator) -> bool:
    """Scratch, stain or break part `i` (body: its footprint) at a random pixel of `surface` (bool), in
    place; False when the damage would be too small (caller redraws)."""
    part = scene.parts[i]
    ys, xs = np.nonzero(surface)
    if xs.size < 30:
        return False
    k = int(rng.integers(xs.size))
    cx, cy = float(xs[k]), float(ys[k])
    base = np.array(scene.colours[part.kind] if on_part else floor_colour, np.float32)
    if defect == "scratch":
        a, length = rng.uniform(0, np.pi), rng.uniform(16, 30)
        t = np.linspace(-0.5, 0.5, 6)[:, None]
        pts = np.array([cx, cy]) + t * length * np.array([np.cos(a), np.sin(a)]) + rng.normal(0, 0.8, (6, 2))
        colour = tuple(np.clip(base * 0.35, 0, 255)) if base.mean() > 120 else (215.0, 215.0, 205.0)
        clip = surface.astype(np.float32)
        wide = np.zeros(body.shape, np.uint8)
        cv2.polylines(wide, [draw._pts(pts)], False, 1, 3, cv2.LINE_8, draw.SHIFT)
        region = (wide > 0) & surface
        scene.marks.append(("scratch", pts, colour, clip))
    elif defect == "stain":
        r = rng.uniform(5, 10)
        blob = draw.fill(draw._circle(r, 24, cx, cy) + rng.normal(0, r * 0.18, (24, 2)), aa=True)
        alpha = cv2.GaussianBlur(blob.astype(np.float32) / 255, (0, 0), 1.0) * rng.uniform(0.75, 0.9)
        colour = (48.0, 36.0, 24.0) if base.mean() > 120 else (196.0, 188.0, 150.0)
        region = _dilated(alpha > 0.15, 1)
        scene.marks.append(("stain", alpha, colour))
    elif defect == "broken_part":
        outer = draw.outline(part.kind)[0]
        radius = {"nut": 7.5, "washer": 5.5, "block": 10.0, "screw": 9.0}[part.kind] * rng.uniform(0.85, 1.15)
        broken = replace(part, chunk=(float(rng.integers(len(outer))), radius, float(rng.integers(2**31))))
        scene.parts[i] = broken
        cut = draw.fill(drawing(scene, broken).chunk) > 0
        region = _dilated(cut & body, 1)
    else:
        raise ValueError(defect)
    if region.sum() < 20:
        return False
    scene.regions.append((defect, region))
    return True


def paint(scene: Scene, recesses: list[np.ndarray]) -> np.ndarray:
    """Floor, the tray (or mat) with `recesses` (polygons in tray coordinates), parts and marks; RGB uint8."""
    rng = np.random.default_rng(scene.render_seed)
    light = tuple(rng.uniform([0.4, 0.5], [1.0, 1.0]))
    img = draw.floor(rng)
    hx, hy = scene.half
    outer = scene.tray.apply(draw._rounded_rect(-hx, -hy, hx, hy, 10))
    draw.draw_tray(img, outer, [scene.tray.apply(r) for r in recesses], rng, light)
    for part in scene.parts:
        draw.draw_part(img, drawing(scene, part), light)
    marks_rng = np.random.default_rng([scene.render_seed, 1])  # own stream: marks leave the noise unchanged
    for mark in scene.marks:
        if mark[0] == "scratch":
            draw.draw_scratch(img, mark[1], mark[2], mark[3])
        else:
            draw.draw_stain(img, mark[1], mark[2], marks_rng)
    return draw.finish(img, rng)


def make_scene(seed: int, split: str, index: int, category: str, normal, logical: tuple, structural: tuple) -> Scene:
    """Image `index` of a split: `normal(rng)`, then for the anomaly splits defect `index % len(defects)` added
    by `add(scene, defect, rng)` from the (defects, add) pair of its kind; redrawn while `add` fails."""
    for sub in range(100):
        rng = sample_rng(seed, f"{category}/{split}", index, sub)
        scene = normal(rng)
        if split in ("logical_anomalies", "structural_anomalies"):
            kinds, add = logical if split.startswith("logical") else structural
            if not add(scene, kinds[index % len(kinds)], rng):
                continue
        return scene
    raise RuntimeError(f"toybox: no valid scene for {category} {split} {index}")  # pragma: no cover


def make_twin(seed: int, tag: str, index: int, category: str, normal, logical: tuple, structural: tuple,
              defect: str):
    """(normal scene, the same scene with `defect` added): as `make_scene` draws an anomaly, from the stream
    (seed, "<category>/<tag>/<defect>", index), so a tag other than a split name gives scenes no split holds.
    Rendered, the two share the render seed, so they differ only where the defect is. ValueError for a defect
    neither (defects, add) pair of the category knows."""
    kinds = [pair for pair in (logical, structural) if defect in pair[0]]
    if not kinds:
        raise ValueError(f"toybox {category} has no defect {defect!r}; choose "
                         f"{', '.join(logical[0] + structural[0])}")
    add = kinds[0][1]
    for sub in range(100):
        rng = sample_rng(seed, f"{category}/{tag}/{defect}", index, sub)
        scene = normal(rng)
        anomaly = copy.deepcopy(scene)
        if add(anomaly, defect, rng):
            return scene, anomaly
    raise RuntimeError(f"toybox: no valid twin for {category} {tag} {index} {defect}")  # pragma: no cover

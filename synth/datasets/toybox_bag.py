"""The toybox's second category, `bag`: loose small parts at random places on a mat, in MVTec LOCO layout.

Like MVTec LOCO's screw_bag, the rule is a count, not a place: every normal image holds exactly RULE (two
hex nuts, two screws, three washers) lying anywhere on a recessed mat, at any rotation, never touching.
Logical anomalies break the count (a missing part, an extra part, a wrong part in place of one); structural
ones damage a part or the mat (scratch, broken part). Scenes, drawing and ground truth are the tray's
(synth.datasets.toybox_scene); only the layout and the rule differ.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw
from synth.datasets import toybox_scene as shared
from synth.datasets.toybox_scene import Part, Scene

CATEGORY = "bag"
VERSION = 1
MAT = "M"  # the one "compartment": every part lies on the mat
RULE = {"screw": 2, "nut": 2, "washer": 3}  # placed largest first
COUNTS = dict(shared.COUNTS)
LOGICAL = ("missing_part", "extra_part", "wrong_part")
STRUCTURAL = ("scratch", "broken_part")
DEFECTS = {name: shared.DEFECTS[name] for name in LOGICAL + STRUCTURAL}  # same pixel values as the tray


def mat_rect(half: tuple[float, float]) -> tuple[float, float, float, float]:
    """(u0, v0, u1, v1) of the mat's floor in tray coordinates."""
    hx, hy = half
    return -hx + draw.WALL, -hy + draw.WALL, hx - draw.WALL, hy - draw.WALL


def _pose(kind: str, rect: tuple[float, ...], rng: np.random.Generator) -> draw.Pose:
    x, y = rng.uniform(rect[0], rect[2]), rng.uniform(rect[1], rect[3])
    return draw.Pose(x, y, rng.uniform(0, 360), rng.uniform(0.92, 1.08))


def _place(scene: Scene, kind: str, others: list[Part], rng: np.random.Generator) -> Part | None:
    return shared.place_in(scene, kind, MAT, mat_rect(scene.half), others, rng, _pose)


def normal_scene(rng: np.random.Generator) -> Scene:
    """A mat holding exactly RULE at random free places, with random pose and colours."""
    mat = draw.Pose(draw.W / 2 + rng.uniform(-6, 6), draw.H / 2 + rng.uniform(-5, 5), rng.uniform(-3, 3))
    colours = shared.tinted_colours(rng)
    half = (138 + rng.uniform(-3, 3), 110 + rng.uniform(-3, 3))
    scene = Scene(mat, half, [], int(rng.integers(2**62)), colours)
    kinds = [kind for kind, n in RULE.items() for _ in range(n)]
    scene.parts = shared.place_all(kinds, lambda kind, parts: _place(scene, kind, parts, rng))
    return scene


def add_logical(scene: Scene, defect: str, rng: np.random.Generator) -> bool:
    """Break the count in place; False when this scene offers no room for that defect (caller redraws)."""
    parts = scene.parts
    victim, rest = shared.remove_one(scene, defect, rng)
    if defect == "missing_part":
        return True
    if defect == "extra_part":
        new = _place(scene, str(rng.choice(list(RULE))), parts, rng)
        if new is not None:
            scene.parts = parts + [new]
            scene.regions.append((defect, shared.part_footprint(scene, new)))
        return new is not None
    if defect == "wrong_part":  # a block (never in the bag) or another kind where the victim lay
        kind = str(rng.choice([k for k in draw.COLOURS if k != victim.kind]))
        for _ in range(60):
            pose = replace(_pose(kind, (0, 0, 0, 0), rng), x=victim.pose.x + rng.uniform(-6, 6),
                           y=victim.pose.y + rng.uniform(-6, 6))
            new = Part(kind, MAT, pose)
            if shared.fits(scene, new, mat_rect(scene.half), rest):
                scene.parts = rest + [new]
                scene.regions.append((defect, shared.part_footprint(scene, victim) | shared.part_footprint(scene, new)))
                return True
        return False
    raise ValueError(defect)


def add_structural(scene: Scene, defect: str, rng: np.random.Generator) -> bool:
    """Scratch a part or the mat, or break a part, in place; False when too small (caller redraws)."""
    candidates = [k for k, p in enumerate(scene.parts) if defect != "scratch" or p.kind != "washer"]
    i = candidates[int(rng.integers(len(candidates)))]
    body = draw.footprint(shared.drawing(scene, scene.parts[i]))
    on_part = defect == "broken_part" or rng.random() < 0.7
    if on_part:
        surface = cv2.erode(body.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    else:
        taken = np.zeros_like(body)
        for p in scene.parts:
            taken |= shared.part_footprint(scene, p)
        floor = draw.fill(scene.tray.apply(_floor(scene))) > 0
        surface = (cv2.erode(floor.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~taken
    return shared.damage(scene, defect, i, body, surface, on_part, draw.COMPARTMENT, rng)


def _floor(scene: Scene) -> np.ndarray:
    return draw._rounded_rect(*mat_rect(scene.half), 6)


def render(scene: Scene) -> np.ndarray:
    """The scene as an RGB uint8 (H, W, 3) photograph-like image."""
    return shared.paint(scene, [_floor(scene)])


def scene_for(seed: int, split: str, index: int) -> Scene:
    """The scene of image `index` of a split: train, validation, good, logical_ or structural_anomalies."""
    return shared.make_scene(seed, split, index, CATEGORY, normal_scene, (LOGICAL, add_logical),
                             (STRUCTURAL, add_structural))

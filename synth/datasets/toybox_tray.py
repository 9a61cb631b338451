"""The toybox's first category, `tray`: a parts tray with strict logical rules, in MVTec LOCO layout.

A tray on a wooden bench has four compartments with a fixed content (RULES): A two hex nuts, B one long
screw, C three washers, D one square block. Normal images vary the tray pose, part positions, rotations and
sizes, the floor, the lighting and the noise, but never the rule. Logical anomalies break the rule (missing,
extra, wrong or misplaced part); structural ones damage a part or the tray (scratch, stain, broken part).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw
from synth.datasets import toybox_scene as shared
from synth.datasets.toybox_scene import (
    Part,
    Scene,
    damage,
    drawing,
    fits,
    make_scene,
    paint,
    place_all,
    place_in,
    remove_one,
    tinted_colours,
)

CATEGORY = "tray"


VERSION = 1


COUNTS = dict(shared.COUNTS)  # the shared split sizes; every shared defect pixel value is the tray's
RULES = {"A": ("nut", "nut"), "B": ("screw",), "C": ("washer", "washer", "washer"), "D": ("block",)}


LOGICAL = ("missing_part", "extra_part", "wrong_part", "misplaced_part")


STRUCTURAL = ("scratch", "stain", "broken_part")
DEFECTS = {name: shared.DEFECTS[name] for name in LOGICAL + STRUCTURAL}  # every shared defect, in that order


def compartment_rect(half: tuple[float, float], letter: str) -> tuple[float, float, float, float]:
    """(u0, v0, u1, v1) of a compartment in tray coordinates: A top left, B top right, C bottom left, D."""
    hx, hy = half
    u = (-hx + draw.WALL, -draw.GAP) if letter in "AC" else (draw.GAP, hx - draw.WALL)
    v = (-hy + draw.WALL, -draw.GAP) if letter in "AB" else (draw.GAP, hy - draw.WALL)
    return u[0], v[0], u[1], v[1]


def _rect(r: tuple[float, float, float, float]) -> np.ndarray:
    return draw._rounded_rect(*r, 4)


def compartment_mask(scene: Scene, letter: str) -> np.ndarray:
    """bool (H, W): a compartment's floor in the image."""
    return draw.fill(scene.tray.apply(_rect(compartment_rect(scene.half, letter)))) > 0


def _fits(scene: Scene, part: Part, others: list[Part]) -> bool:
    return fits(scene, part, compartment_rect(scene.half, part.compartment), others)


def _pose(kind: str, rect: tuple[float, ...], rng: np.random.Generator) -> draw.Pose:
    angle = {"nut": rng.uniform(0, 60), "washer": rng.uniform(0, 360), "block": rng.uniform(-20, 20),
             "screw": rng.uniform(-25, 25) + 180 * rng.integers(2)}[kind]
    x, y = rng.uniform(rect[0], rect[2]), rng.uniform(rect[1], rect[3])
    return draw.Pose(x, y, angle, rng.uniform(0.92, 1.08))


def place(scene: Scene, kind: str, letter: str, others: list[Part], rng: np.random.Generator,
          tries: int = 200) -> Part | None:
    """A part of `kind` at a free random spot of compartment `letter`, or None when none is found."""
    return place_in(scene, kind, letter, compartment_rect(scene.half, letter), others, rng, _pose, tries)


def normal_scene(rng: np.random.Generator) -> Scene:
    """A scene that obeys RULES exactly, with random pose, placement and colours."""
    tray = draw.Pose(draw.W / 2 + rng.uniform(-7, 7), draw.H / 2 + rng.uniform(-6, 6), rng.uniform(-2.5, 2.5))
    colours = tinted_colours(rng)
    half = (140 + rng.uniform(-3, 3), 110 + rng.uniform(-3, 3))
    scene = Scene(tray, half, [], int(rng.integers(2**62)), colours)
    for letter, kinds in RULES.items():
        scene.parts += place_all(kinds, lambda kind, parts, letter=letter: place(scene, kind, letter, parts, rng))
    return scene


def add_logical(scene: Scene, defect: str, rng: np.random.Generator) -> bool:
    """Break one rule in place; False when this scene offers no room for that defect (caller redraws)."""
    parts = scene.parts
    victim, rest = remove_one(scene, defect, rng)
    if defect == "missing_part":
        return True
    if defect == "extra_part":
        letter = str(rng.choice(list(RULES)))
        new = place(scene, RULES[letter][0], letter, parts, rng)
        if new is not None:
            scene.parts = parts + [new]
            scene.regions.append((defect, shared.part_footprint(scene, new)))
        return new is not None
    if defect == "wrong_part":
        kind = str(rng.choice([k for k in draw.COLOURS if k != victim.kind]))
        for _ in range(60):
            pose = replace(_pose(kind, (0, 0, 0, 0), rng), x=victim.pose.x + rng.uniform(-6, 6),
                           y=victim.pose.y + rng.uniform(-6, 6))
            new = Part(kind, victim.compartment, pose)
            if _fits(scene, new, rest):
                scene.parts = rest + [new]
                scene.regions.append((defect, shared.part_footprint(scene, victim) | shared.part_footprint(scene, new)))
                return True
        return False
    if defect == "misplaced_part":
        letter = str(rng.choice([c for c in RULES if victim.kind not in RULES[c]]))
        new = place(scene, victim.kind, letter, rest, rng)
        if new is not None:
            scene.parts = rest + [new]
            scene.regions += [(defect, shared.part_footprint(scene, new)),
                              (defect, shared.part_footprint(scene, victim))]
        return new is not None
    raise ValueError(defect)


def add_structural(scene: Scene, defect: str, rng: np.random.Generator) -> bool:
    """Damage a part or the tray in place; False when the damage would be too small (caller redraws)."""
    candidates = [k for k, p in enumerate(scene.parts) if defect != "scratch" or p.kind != "washer"]
    i = candidates[int(rng.integers(len(candidates)))]
    part = scene.parts[i]
    body = draw.footprint(drawing(scene, part))
    on_part = defect == "broken_part" or rng.random() < 0.7
    if on_part:
        surface = cv2.erode(body.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    else:
        letter = str(rng.choice(list(RULES)))
        taken = np.zeros_like(body)
        for p in scene.parts:
            taken |= shared.part_footprint(scene, p)
        floor = cv2.erode(compartment_mask(scene, letter).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        surface = floor & ~taken
    return damage(scene, defect, i, body, surface, on_part, draw.COMPARTMENT, rng)


def render(scene: Scene) -> np.ndarray:
    """The scene as an RGB uint8 (H, W, 3) photograph-like image."""
    comps = [_rect(compartment_rect(scene.half, c)) for c in RULES]
    return paint(scene, comps)


def scene_for(seed: int, split: str, index: int) -> Scene:
    """The scene of image `index` of a split: train, validation, good, logical_ or structural_anomalies."""
    return make_scene(seed, split, index, CATEGORY, normal_scene, (LOGICAL, add_logical),
                      (STRUCTURAL, add_structural))

"""The toybox's third category, `bottle`: a juice bottle whose rule ties its parts together, in MVTec LOCO layout.

Like MVTec LOCO's juice_bottle, a tall bottle stands in front of a plain backdrop: a cap, the glass, a liquid
whose colour goes with the fruit on the front label (orange, cherry, lime), the front label with that icon and,
below it, a small second label with a barcode. The rule (`rules`): the liquid is the icon's flavour, the fill
level lies in LEVEL_BAND, both labels are there in their places, the front one above the second. Normal images
vary the bottle's pose, the labels' by a pixel or a degree, the flavour, the fill level within its band, the
tints, the lighting and the noise, never the rule. Logical anomalies break exactly one rule; structural ones
damage the glass, the cap or the liquid. Drawing: synth.datasets.toybox_bottle_draw; image `index` of a split
comes from synth.datasets.toybox_scene.make_scene, as for the tray and the bag.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.datasets import toybox_bottle_draw as bd
from synth.datasets import toybox_draw as draw
from synth.datasets import toybox_scene as shared
from synth.datasets.toybox_bottle_draw import Bottle, render  # noqa: F401  (render: the category's API)

CATEGORY = "bottle"
VERSION = 1
COUNTS = dict(shared.COUNTS)
LOGICAL = ("missing_label", "missing_icon", "misplaced_label", "swapped_labels", "fill_level_high",
           "fill_level_low", "colour_mismatch")
STRUCTURAL = ("scratch", "chip", "contamination")
# name -> (pixel value, saturation threshold, relative?) as toybox_scene.DEFECTS: `scratch` keeps the shared value,
# the others take values no other toybox category uses. Logical thresholds are about half the region's median
# area in the seed-0 test split (front label ~3950 px, icon ~620, misplaced ~4700, swapped ~7900, level bands
# ~2700 and ~1850, visible liquid ~5900): finding half of a large region counts as finding it.
DEFECTS = {"missing_label": (248, 2000, False), "missing_icon": (247, 300, False),
           "misplaced_label": (246, 2300, False), "swapped_labels": (245, 3900, False),
           "fill_level_high": (244, 1300, False), "fill_level_low": (243, 900, False),
           "colour_mismatch": (242, 2900, False), "scratch": shared.DEFECTS["scratch"],
           "chip": (241, 1.0, True), "contamination": (240, 1.0, True)}
PARTS = ("glass", "liquid", "cap", "front_label", "icon", "second_label")  # drawing order
LEVEL_BAND = (-24.0, -18.0)  # normal fill level, bottle frame y (px below the centre; smaller is higher)
JITTER = (1.5, 1.2)  # a normal label's offset from its home: px, degrees


def _label_pose(home: tuple[float, float], rng: np.random.Generator) -> draw.Pose:
    return draw.Pose(home[0] + rng.uniform(-JITTER[0], JITTER[0]), home[1] + rng.uniform(-JITTER[0], JITTER[0]),
                     rng.uniform(-JITTER[1], JITTER[1]))


def normal_scene(rng: np.random.Generator) -> Bottle:
    """A bottle that obeys the rule, with random pose, flavour, fill level (within LEVEL_BAND) and tints."""
    pose = draw.Pose(draw.W / 2 + rng.uniform(-9, 9), draw.H / 2 + rng.uniform(-3, 3), rng.uniform(-3, 3),
                     rng.uniform(0.96, 1.02))
    flavour = str(rng.choice(list(bd.FLAVOURS)))
    tints = {"glass": tuple(rng.uniform(0.84, 0.92) * rng.uniform(0.97, 1.03, 3)),
             "liquid": rng.uniform(0.92, 1.06), "cap": rng.uniform(0.8, 1.25),
             "paper": tuple(rng.uniform(0.95, 1.02) * rng.uniform(0.98, 1.02, 3))}
    return Bottle(pose, flavour, flavour, rng.uniform(*LEVEL_BAND), _label_pose(bd.FRONT_HOME, rng),
                  _label_pose(bd.SECOND_HOME, rng), True, tints, int(rng.integers(2**62)))


def _near(pose: draw.Pose | None, home: tuple[float, float]) -> bool:
    return pose is not None and max(abs(pose.x - home[0]), abs(pose.y - home[1])) <= JITTER[0] + 1e-9 \
        and abs(pose.angle) <= JITTER[1] + 1e-9


def rules(scene: Bottle) -> dict[str, bool]:
    """Each rule of a normal bottle -> whether `scene` keeps it: flavour (liquid = icon), level (in LEVEL_BAND),
    front_label and second_label (there), icon (on the front label), placement (the front label sits at one of
    the two label places), order (the front label above the second). A missing label keeps the rules about it."""
    front, second = scene.front, scene.second
    return {"flavour": scene.liquid == scene.flavour, "level": LEVEL_BAND[0] <= scene.level <= LEVEL_BAND[1],
            "front_label": front is not None, "second_label": second is not None,
            "icon": front is None or scene.icon,
            "placement": front is None or _near(front, bd.FRONT_HOME) or _near(front, bd.SECOND_HOME),
            "order": front is None or second is None or front.y < second.y}


BROKEN = {"missing_label": "front_label", "missing_icon": "icon", "misplaced_label": "placement",
          "swapped_labels": "order", "fill_level_high": "level", "fill_level_low": "level",
          "colour_mismatch": "flavour"}  # logical defect -> the one rule it breaks


def part_masks(scene: Bottle) -> dict[str, np.ndarray]:
    """Part name -> bool (H, W) footprint, for the parts `scene` shows, in PARTS order (a missing label and its
    icon are left out). The liquid's footprint includes what the labels hide."""
    return {name: bd.mask(polys) for name, polys in bd.part_polygons(scene).items()}


def _labels(scene: Bottle) -> np.ndarray:
    polys = bd.part_polygons(scene)
    return bd.mask(polys.get("front_label", []) + polys.get("second_label", []))


def visible_liquid(scene: Bottle) -> np.ndarray:
    """bool (H, W): the liquid where no label hides it."""
    return bd.mask(bd.part_polygons(scene)["liquid"]) & ~shared._dilated(_labels(scene), 1)


def _label_fits(scene: Bottle, pose: draw.Pose, half: tuple[float, float], other: draw.Pose | None,
                other_half: tuple[float, float]) -> bool:
    """The label lies 1.5 px inside the body's sides and base and 3 px away from the other label."""
    corners = pose.apply(draw._rounded_rect(-half[0], -half[1], *half, 2))
    if corners[:, 1].min() < bd.SHOULDER[1] or corners[:, 1].max() > bd.BOTTOM - 2 \
            or (np.abs(corners[:, 0]) > bd.half_width(corners[:, 1]) - 1.5).any():
        return False
    if other is None:
        return True
    theirs = other.apply(draw._rounded_rect(-other_half[0] - 3, -other_half[1] - 3, other_half[0] + 3,
                                            other_half[1] + 3, 2))
    return not (bd.mask([scene.pose.apply(corners)]) & bd.mask([scene.pose.apply(theirs)])).any()


def _level_band(scene: Bottle, level: float) -> np.ndarray:
    """Visible pixels between the scene's fill level and `level` (with both surface lines), where the liquid
    comes or goes."""
    top, bottom = min(scene.level, level) - 1, max(scene.level, level) + 2
    above = bd.mask([bd.to_image(scene, bd.liquid_outline(top))])
    below = bd.mask([bd.to_image(scene, bd.liquid_outline(bottom))])
    return above & ~below & ~_labels(scene)


def add_logical(scene: Bottle, defect: str, rng: np.random.Generator) -> bool:
    """Break exactly one rule (BROKEN[defect]) in place and record its region; False when this scene offers no
    room for that defect (the caller redraws)."""
    polys = bd.part_polygons(scene)
    if defect == "missing_label":
        region = bd.mask(polys["front_label"])
        scene.front = None
    elif defect == "missing_icon":
        region = bd.mask(polys["icon"])
        scene.icon = False
    elif defect == "misplaced_label":
        sign = rng.choice([-1.0, 1.0], 2)
        old = scene.front
        new = draw.Pose(old.x + rng.uniform(-5, 5), old.y + sign[0] * rng.uniform(6, 12),
                        sign[1] * rng.uniform(4, 10))
        if not _label_fits(scene, new, bd.FRONT_HALF, scene.second, bd.SECOND_HALF):
            return False
        scene.front = new
        region = bd.mask(polys["front_label"] + bd.part_polygons(scene)["front_label"])
    elif defect == "swapped_labels":
        scene.front, scene.second = scene.second, scene.front
        if not _label_fits(scene, scene.front, bd.FRONT_HALF, None, bd.SECOND_HALF):
            return False
        new = bd.part_polygons(scene)
        region = bd.mask(polys["front_label"] + polys["second_label"] + new["front_label"] + new["second_label"])
    elif defect in ("fill_level_high", "fill_level_low"):
        level = rng.uniform(-62, -50) if defect == "fill_level_high" else rng.uniform(4, 30)
        region = _level_band(scene, level)
        scene.level = level
    elif defect == "colour_mismatch":
        scene.liquid = str(rng.choice([f for f in bd.FLAVOURS if f != scene.flavour]))
        region = visible_liquid(scene)
    else:
        raise ValueError(defect)
    scene.regions.append((defect, shared._dilated(region, 1)))
    return True


def _chip(scene: Bottle, rng: np.random.Generator) -> np.ndarray:
    """A jagged piece (image polygon) around a point of the cap's outline or the glass's sides and shoulders."""
    if rng.random() < 0.35:
        outline = draw._rounded_rect(*bd.CAP, 3)
        outline = outline[outline[:, 1] < bd.CAP[3] - 2]  # not where the cap sits on the neck
    else:
        outline = bd.profile(bd.NECK_TOP, bd.BOTTOM, 0)
        outline = outline[(outline[:, 1] > bd.NECK_TOP + 4) & (outline[:, 1] < bd.BOTTOM - 10)]
    centre = outline[int(rng.integers(len(outline)))]
    t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    r = rng.uniform(4.5, 7.0) * rng.uniform(0.7, 1.2, t.size)
    return bd.to_image(scene, np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1))


def add_structural(scene: Bottle, defect: str, rng: np.random.Generator) -> bool:
    """Scratch the glass, chip the glass or the cap, or float a particle in the liquid, in place; False when the
    damage would be too small (the caller redraws)."""
    polys = bd.part_polygons(scene)
    if defect == "chip":
        chip = _chip(scene, rng)
        region = bd.mask([chip]) & bd.mask(polys["glass"] + polys["cap"])
        scene.chips.append(chip)
    elif defect == "scratch":
        taken = shared._dilated(_labels(scene) | bd.mask(polys["cap"]), 3)
        surface = (cv2.erode(bd.mask(polys["glass"]).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~taken
        ys, xs = np.nonzero(surface)
        if xs.size < 30:
            return False
        k = int(rng.integers(xs.size))
        a, length = rng.uniform(0, np.pi), rng.uniform(18, 32)
        t = np.linspace(-0.5, 0.5, 6)[:, None]
        pts = np.array([xs[k], ys[k]], float) + t * length * np.array([np.cos(a), np.sin(a)])
        pts += rng.normal(0, 0.8, pts.shape)
        in_liquid = bd.mask(polys["liquid"])[ys[k], xs[k]]
        colour = (236.0, 238.0, 240.0) if in_liquid else (70.0, 72.0, 76.0)
        wide = np.zeros((draw.H, draw.W), np.uint8)
        cv2.polylines(wide, [draw._pts(pts)], False, 1, 3, cv2.LINE_8, draw.SHIFT)
        region = (wide > 0) & surface
        scene.marks.append(("scratch", pts, colour, surface.astype(np.float32)))
    elif defect == "contamination":
        ys, xs = np.nonzero(cv2.erode(visible_liquid(scene).astype(np.uint8), np.ones((11, 11), np.uint8)))
        if xs.size < 30:
            return False
        k = int(rng.integers(xs.size))
        r = rng.uniform(3.0, 5.5)
        blob = draw.fill(draw._circle(r, 24, xs[k], ys[k]) + rng.normal(0, r * 0.15, (24, 2)), aa=True)
        alpha = cv2.GaussianBlur(blob.astype(np.float32) / 255, (0, 0), 0.8) * rng.uniform(0.8, 0.95)
        dark = np.mean(bd.FLAVOURS[scene.liquid]) < 90
        scene.marks.append(("stain", alpha, (214.0, 206.0, 186.0) if dark else (46.0, 36.0, 26.0)))
        region = alpha > 0.15
    else:
        raise ValueError(defect)
    if region.sum() < 20:
        return False
    scene.regions.append((defect, shared._dilated(region, 1)))
    return True


def scene_for(seed: int, split: str, index: int) -> Bottle:
    """The scene of image `index` of a split: train, validation, good, logical_ or structural_anomalies."""
    return shared.make_scene(seed, split, index, CATEGORY, normal_scene, (LOGICAL, add_logical),
                             (STRUCTURAL, add_structural))

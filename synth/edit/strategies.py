"""The strategy table: every edit strategy by name, edge-map edits (synth.edit.edits), painted damage
(synth.edit.damage) and whole-part pixel edits (synth.edit.parts) alike, and `plan_edit`, which draws a
target region and runs the strategy's planner.

The table imports both planner modules, so neither imports the other (method.md step 4).
"""

from dataclasses import dataclass, replace

import numpy as np

from synth import defaults
from synth.edit.damage import plan_chip, plan_stroke
from synth.edit.edits import Edit, plan_colour, plan_jitter, plan_merge, plan_remove, plan_replace, plan_warp
from synth.edit.geometry import bbox_of, dilate
from synth.edit.parts import PARTS
from synth.edit.parts import PLANNERS as PART_PLANNERS
from synth.features.regions import ScaleRule, arbitrary_region

LOGICAL_STRATEGIES = ("remove", "replace", "merge")


STRUCTURAL_STRATEGIES = ("stroke", "jitter", "chip")


EXTRA_STRATEGIES = ("colour", "warp")


# The rest of the logical-defect taxonomy (MVTec LOCO AD; issue 23): whole parts missing, misplaced, swapped,
# resized, recoloured, painted with the image's own pixels (synth.edit.parts); in the defaults since issue 23.
PART_STRATEGIES = PARTS


STRATEGIES = LOGICAL_STRATEGIES + STRUCTURAL_STRATEGIES + EXTRA_STRATEGIES + PART_STRATEGIES


# What `build` uses without --strategies. jitter and warp stay available but are left out: rendered by a
# small generator they are smooth smears and bent outlines, and a localizer learns those instead of damage.
# Measured on toybox (structural-only mix, 1,000 samples, 200 steps, seed 0; BENCHMARKS.md): structural
# AU-sPRO 50.7 with them, 56.6 without (scratch sPRO 54 -> 65, broken part 51 -> 81).
DEFAULT_STRATEGIES = defaults.STRATEGIES   # chosen by measurement (synth/defaults.py)


KIND_OF = {s: "logical" for s in LOGICAL_STRATEGIES + PART_STRATEGIES} | {
    s: "structural" for s in STRUCTURAL_STRATEGIES + EXTRA_STRATEGIES}


ATTEMPTS = 8


# Chance that an edit's region is a semantic one (a whole part) rather than arbitrary shapes. Logical
# anomalies are about whole parts (missing, extra, wrong), so logical edits mostly take one; structural
# damage is as likely anywhere. Measured on toybox (BENCHMARKS.md): 0.8 for logical edits beat 0.5.
SEMANTIC_P = {"logical": 0.8, "structural": 0.5}


@dataclass
class _Target:
    mask: np.ndarray
    source: str  # "semantic" | "arbitrary" | "stroke"
    label: int = 0


def _choose_target(regions: np.ndarray | None, foreground: np.ndarray, rng: np.random.Generator,
                   semantic_p: float, pad: int, edge: np.ndarray, on_parts: bool = False) -> _Target:
    """A semantic region (dilated by `pad`) with probability `semantic_p` when there are any, else arbitrary
    (centred on an edge pixel of the foreground: edits go on structure, not on blank carrier). With
    `on_parts` (logical edits) and semantic regions present, the arbitrary shapes are centred on a part and
    kept within 2 `pad` of the parts: a piece of a part goes missing or is swapped, never a piece of the
    carrier's outline or of the background."""
    has = regions is not None and regions.any()
    labels = np.flatnonzero(np.bincount(regions.ravel())[1:]) + 1 if has else []
    if len(labels) and rng.random() < semantic_p:
        k = int(labels[rng.integers(len(labels))])
        return _Target(dilate(regions == k, pad), "semantic", k)
    if on_parts and len(labels):
        parts = dilate(regions > 0, 2 * pad)
        return _Target(arbitrary_region(foreground.shape, foreground & parts, rng, near=regions > 0), "arbitrary")
    return _Target(arbitrary_region(foreground.shape, foreground, rng, near=edge > 0.5), "arbitrary")




_PLANNERS = {"remove": plan_remove, "replace": plan_replace, "merge": plan_merge, "stroke": plan_stroke,
             "jitter": plan_jitter, "chip": plan_chip, "warp": plan_warp, "colour": plan_colour} | PART_PLANNERS


# Strategies whose pixels are painted on the normal image, not rendered by the generator (no G call).
PAINTED = ("stroke", "chip", "colour", *PART_STRATEGIES)


# Bounds for whole-part edits: no generator to protect, so any part up to half the object; the smallest
# part still has to be a part, not a speck.
PART_RULE = ScaleRule(min_area=0.002, max_area=0.5, max_edges=1.0)


def plan_edit(strategy: str, edge: np.ndarray, foreground: np.ndarray, regions: np.ndarray | None,
              other_edge: np.ndarray | None, rng: np.random.Generator, *,
              other_regions: np.ndarray | None = None, rule: ScaleRule | None = None,
              semantic_p: float | None = None, attempts: int = ATTEMPTS) -> Edit | None:
    """Plan one edit of `strategy` on the normal edge map, or None when no valid region is found.

    Whole-part strategies (PART_STRATEGIES) pick their own parts (labels of `regions`) under PART_RULE
    unless `rule` is given; otherwise regions are semantic (a label of `regions`, dilated a few px so the
    part's outline is inside) with probability `semantic_p` (default: SEMANTIC_P of the strategy's kind),
    else arbitrary (three random shapes). Each attempt draws a region and an edit;
    an attempt whose region breaks the scale `rule` or that changes too little is redrawn, up to `attempts`
    times, with the same rng. `other_edge`/`other_regions` are another normal image's edge and label maps
    (None: the image itself). Regions are clipped to the foreground dilated by the same few px.
    """
    if strategy not in _PLANNERS:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    edge = np.asarray(edge, np.float32)
    foreground = np.asarray(foreground, bool)
    if not foreground.any():
        return None
    rule = rule or (PART_RULE if strategy in PART_STRATEGIES else ScaleRule())
    if strategy in ("stroke", "chip"):  # painted, no generator to protect: a small crack or chip is fine
        rule = replace(rule, min_area=0.0)
    semantic_p = SEMANTIC_P[KIND_OF[strategy]] if semantic_p is None else semantic_p
    pad = max(2, round(3 * min(edge.shape) / 256))
    if other_edge is None:
        other_edge, other_regions = edge, regions if other_regions is None else other_regions
    allowed = dilate(foreground, pad)
    for _ in range(attempts):
        if strategy in ("stroke", "chip"):  # they pick their own surface (synth.edit.damage)
            target = _Target(np.zeros_like(foreground), "surface")
        elif strategy in PART_STRATEGIES:  # they pick their own whole parts (synth.edit.parts)
            target = _Target(np.zeros_like(foreground), "part")
        else:
            target = _choose_target(regions, foreground, rng, semantic_p, pad, edge,
                                    on_parts=KIND_OF[strategy] == "logical")
            if not target.mask.any():
                continue
        made = _PLANNERS[strategy](edge=edge, target=target, other_edge=np.asarray(other_edge, np.float32),
                                   other_regions=other_regions, foreground=foreground, rng=rng, pad=pad,
                                   regions=regions)
        if made is None:
            continue
        new, region, params = made
        region = region & allowed
        new = np.where(region, new, edge).astype(np.float32)
        box = bbox_of(region)
        if box is None or not rule.accepts(region, foreground, edge):
            continue
        params = {"region": target.source, "label": target.label} | params
        return Edit(new, region, KIND_OF[strategy], strategy, box, params)
    return None

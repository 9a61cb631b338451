"""What the toybox drawing code knows about an image, at a build size: its drawn lines and its part masks.

Benchmarks and tests measure the edge extractor (does an edge lie on every drawn wall and part outline?) and
the region machinery (does a logical edit's region lie on a part?) against this, never against a detector.
Images are resized to `size` x `size` by `build` (the toybox is 320 x 256, so x and y scale differently);
the same scaling is applied to the drawing's polygons, which are rasterised at the target size.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw
from synth.datasets.toybox_scene import Scene, drawing
from synth.datasets.toybox_tray import RULES, compartment_rect


def _scaled(poly: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(poly, np.float64) * (size / draw.W, size / draw.H)


def _polyline(canvas: np.ndarray, poly: np.ndarray, closed: bool) -> None:
    pts = np.round(poly * (1 << draw.SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], closed, 1, 1, cv2.LINE_8, draw.SHIFT)


def _fill(canvas: np.ndarray, poly: np.ndarray, value: int) -> None:
    pts = np.round(poly * (1 << draw.SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], value, cv2.LINE_8, draw.SHIFT)


def tray_outline(scene: Scene) -> np.ndarray:
    """The tray's outer polygon in image coordinates (as `toybox.render` draws it)."""
    hx, hy = scene.half
    return scene.tray.apply(draw._rounded_rect(-hx, -hy, hx, hy, 10))


def compartment_outlines(scene: Scene) -> list[np.ndarray]:
    """The four compartment polygons (their rims are the tray's light walls) in image coordinates."""
    return [scene.tray.apply(draw._rounded_rect(*compartment_rect(scene.half, c), 4)) for c in RULES]


def structure_lines(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(structure, details): bool (size, size) 1 px rasters of the drawn lines.

    structure: the tray's outline, the compartment walls, every part's outline and holes (what an edge
    extractor must keep); details: the faint lines drawn on parts (chamfers, threads, slots, bevels).
    """
    structure = np.zeros((size, size), np.uint8)
    details = np.zeros((size, size), np.uint8)
    _polyline(structure, _scaled(tray_outline(scene), size), True)
    for poly in compartment_outlines(scene):
        _polyline(structure, _scaled(poly, size), True)
    for part in scene.parts:
        d = drawing(scene, part)
        for poly in [d.outer, *d.holes]:
            _polyline(structure, _scaled(poly, size), True)
        for line, _ in d.lines:
            _polyline(details, _scaled(line, size), len(line) > 2)
    return structure > 0, details > 0


def tray_mask(scene: Scene, size: int) -> np.ndarray:
    """bool (size, size): the tray (carrier) in the image."""
    out = np.zeros((size, size), np.uint8)
    _fill(out, _scaled(tray_outline(scene), size), 1)
    return out > 0


def tray_part_masks(scene: Scene, size: int) -> np.ndarray:
    """uint16 (size, size) label map of the parts on the tray: 0 = no part, k = scene.parts[k - 1]
    (footprint, holes included: what a missing part leaves empty)."""
    out = np.zeros((size, size), np.uint16)
    for k, part in enumerate(scene.parts, start=1):
        _fill(out, _scaled(drawing(scene, part).outer, size), k)
    return out


def _scene(category: str, split: str, index: int, seed: int):
    from synth.datasets.toybox import categories

    module = categories().get(category)
    if module is None:
        raise ValueError(f"toybox has no category {category!r}; choose {', '.join(sorted(categories()))}")
    return module.scene_for(seed, split, index)


def _bottle_polygons(scene) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """(carrier, parts) of a bottle: the glass and cap's outlines, and the polygons of every other part."""
    from synth.datasets.toybox_bottle_draw import part_polygons

    polys = part_polygons(scene)
    return polys["glass"] + polys["cap"], [p for name, p in polys.items() if name != "glass"]


def part_masks(category: str, split: str, index: int, seed: int = 0, size: int = 256) -> np.ndarray:
    """uint16 (size, size) part labels of toybox `category` image `index` of `split` (0 = no part, k = the
    scene's k-th part; bottle: its parts in toybox_bottle.PARTS order less the glass, which is the carrier,
    later parts drawn over earlier ones). ValueError for another category."""
    scene = _scene(category, split, index, seed)
    if isinstance(scene, Scene):
        return tray_part_masks(scene, size)
    out = np.zeros((size, size), np.uint16)
    for k, polys in enumerate(_bottle_polygons(scene)[1], start=1):
        for poly in polys:
            _fill(out, _scaled(poly, size), k)
    return out


def carrier_mask(category: str, split: str, index: int, seed: int = 0, size: int = 256) -> np.ndarray:
    """bool (size, size): the carrier the parts lie on (the tray, the bag's mat, the bottle's glass and cap)
    in toybox `category` image `index` of `split`."""
    scene = _scene(category, split, index, seed)
    if isinstance(scene, Scene):
        return tray_mask(scene, size)
    out = np.zeros((size, size), np.uint8)
    for poly in _bottle_polygons(scene)[0]:
        _fill(out, _scaled(poly, size), 1)
    return out > 0


def covered(region: np.ndarray, mask: np.ndarray, pad: int, cover: float) -> bool:
    """At least `cover` of the region's pixels lie within `pad` px of `mask` (False for an empty region)."""
    if not region.any():
        return False
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1))
    near = cv2.dilate(mask.astype(np.uint8), disk) if pad else mask
    return float(np.asarray(near, bool)[region].mean()) >= cover


def is_part_edit(strategy: str, region: np.ndarray, parts: np.ndarray, carrier: np.ndarray,
                 content: np.ndarray | None, other_parts: np.ndarray, size: int, cover: float = 0.5) -> bool:
    """Whether a logical edit changes a part (benchmarks/region_share.py):
    remove: its region lies on a part; replace: it takes `cover` of a part, and what comes in (`content`, the
    other image's region its edges came from; None for a patch) is a part of the other image (the region
    also holds where the new part lands, on the carrier); merge: what comes in is a part and it lands on
    the carrier, not on a part. "Lies on" = `cover` of the region within twice the edit's pad (3 px at 256:
    the pad around an edit region, and a part's drop shadow). `parts` are labels (0 = no part)."""
    pad = 2 * max(2, round(3 * size / 256))
    from_part = content is not None and covered(content, other_parts > 0, pad, cover)
    if strategy == "remove":
        return covered(region, parts > 0, pad, cover)
    if strategy == "replace":
        inside = np.bincount(parts[region].ravel(), minlength=int(parts.max()) + 1)[1:]
        whole = np.bincount(parts.ravel(), minlength=int(parts.max()) + 1)[1:]
        return bool((inside >= cover * np.maximum(whole, 1)).any()) and from_part
    if strategy == "merge":
        return from_part and covered(region, carrier, 0, cover) and not covered(region, parts > 0, 0, cover)
    raise ValueError(f"{strategy!r} is not a logical strategy")


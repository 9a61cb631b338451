"""`logical-synth show`: a few samples made end to end and laid out as a contact sheet (a quick visual check).

A minimal per-sample path (source features -> plan_edit -> render -> compose) kept apart from build's
canonical one (synth.pipeline) so the preview works with the stand-in renderer and no cache.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.compose import Composed, collapsed, compose
from synth.edits import STRATEGIES, Edit, apply_colour, plan_edit
from synth.images import load_rgb, resize_rgb
from synth.jnd import jnd_map
from synth.regions import foreground_mask, semantic_regions
from synth.rng import sample_rng
from synth.sheet import contact_sheet
from synth.standin import StandInRenderer

COLUMNS = ["normal edge", "anomaly edge", "target mask", "anomaly", "normal"]
STANDIN_BANNER = "STAND-IN RENDERER - no fitted generator"
TRIES = 6


@dataclass
class Source:
    """One normal image and what every sample made from it reuses."""

    image: np.ndarray
    jnd: np.ndarray
    edge: np.ndarray
    foreground: np.ndarray
    regions: np.ndarray
    render: np.ndarray


def source_features(image: np.ndarray, extractor, renderer) -> Source:
    """JND, edges (u8-quantised, as build stores them), foreground, regions and G(E_j) of one image."""
    jnd = jnd_map(image)
    edge = np.clip(np.rint(extractor(image) * 255.0), 0, 255).astype(np.float32) / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        foreground = foreground_mask(image, jnd)
    regions = semantic_regions(image, edge, foreground, jnd)
    render = renderer.render(edge[None], image[None])[0]
    return Source(image, jnd, edge, foreground, regions, render)


def render_edit(edit: Edit, source: Source, renderer) -> tuple[np.ndarray, np.ndarray]:
    """(R_A, reference) for compose: the generator's render of the edited edges against G(E_j); for a colour
    edit, the colour-shifted normal image against the normal image itself (no generator call)."""
    if edit.strategy == "colour":
        return apply_colour(source.image, edit.region, edit.params), source.image
    return renderer.render(edit.edge[None], source.image[None])[0], source.render


def make_sample(sources: list[Source], index: int, strategy: str, renderer, seed: int, category: str,
                quality: dict | None = None) -> tuple[int, Edit | None, Composed]:
    """Sample `index`: source, edit, render, compose; a rejection is redrawn with the next sub-seed."""
    out = None
    for sub in range(TRIES):
        rng = sample_rng(seed, category, index, sub)
        k = int(rng.integers(len(sources)))
        other = sources[(k + 1 + int(rng.integers(len(sources) - 1))) % len(sources)] if len(sources) > 1 \
            else sources[k]
        src = sources[k]
        edit = plan_edit(strategy, src.edge, src.foreground, src.regions, other.edge, rng,
                         other_regions=other.regions)
        if edit is None:
            out = (k, None, Composed(src.image.copy(), np.zeros(src.edge.shape, bool), "no_region"))
            continue
        if quality and collapsed(src.render, src.image, quality):
            out = (k, edit, Composed(src.image.copy(), np.zeros(src.edge.shape, bool), "collapsed_render"))
            continue
        render_a, reference = render_edit(edit, src, renderer)
        composed = compose(src.image, render_a, reference, edit.region)
        out = (k, edit, composed)
        if composed.reason is None:
            break
    return out


def show_sheet(paths: list[Path], n: int, size: int, strategies: list[str], extractor, renderer, seed: int,
               category: str, banner: str | None = None,
               quality: dict | None = None) -> tuple[np.ndarray, list]:
    """The contact sheet of `n` samples over the normal images `paths` (strategies in turn), and row notes."""
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}")
    sources = [source_features(resize_rgb(load_rgb(p), size), extractor, renderer) for p in paths]
    rows, labels, notes = [], [], []
    for i in range(n):
        strategy = strategies[i % len(strategies)]
        k, edit, composed = make_sample(sources, i, strategy, renderer, seed, category, quality)
        src = sources[k]
        kind = edit.kind if edit is not None else "-"
        region = edit.region if edit is not None else np.zeros(src.edge.shape, bool)
        anomaly_edge = edit.edge if edit is not None else src.edge
        overlay = _mask_overlay(region, composed.mask)
        rows.append([src.edge, anomaly_edge, overlay, composed.anomaly, src.image])
        status = "" if composed.reason is None else f"  REJECTED: {composed.reason}"
        labels.append(f"#{i} {strategy} ({kind}) src {paths[k].name}{status}")
        notes.append((i, strategy, kind, composed.reason))
    return contact_sheet(rows, labels, COLUMNS, banner=banner), notes


def _mask_overlay(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Target region in dark grey, the final (SSIM) mask in white."""
    out = np.zeros(region.shape, np.uint8)
    out[region] = 90
    out[mask] = 255
    return out


def pick_renderer(dataset: str, category: str, generator: Path | None, edges: str, size: int):
    """(renderer, is_stand_in): the category's fitted generator when one exists, else the stand-in."""
    path = Path(generator) if generator is not None else Path("data") / dataset / category / "generator.pt"
    if generator is None and not path.is_file():
        return StandInRenderer(), True
    try:
        from synth.generator import load_generator
    except ImportError:  # the generator module is not installed in this checkout
        return StandInRenderer(), True
    return load_generator(path, edges=edges, size=size), False


def run_show(dataset: str, root: Path | None, category: str | None, n: int, out: Path, seed: int, size: int,
             strategies: list[str], edges: str, pidinet_weights: Path | None, generator: Path | None,
             max_sources: int = 8) -> tuple[Path, bool, list]:
    """Write the preview sheet of `n` samples; returns (path, used the stand-in renderer, row notes)."""
    from synth.datasets import open_dataset
    from synth.edges import get_extractor
    from synth.errors import DatasetError
    from synth.images import save_image

    reader = open_dataset(dataset, root)
    cats = reader.categories()
    category = category or cats[0]
    if category not in cats:
        raise DatasetError(f"--category {category!r} is not in {reader.root}; it has {', '.join(cats)}")
    paths = reader.train_images(category)[:max_sources]
    if not paths:
        raise DatasetError(f"{reader.root}: category {category!r} has no normal training images")
    renderer, standin = pick_renderer(dataset, category, generator, edges, size)
    banner = STANDIN_BANNER if standin else f"generator {renderer.identity}"
    quality = None if standin else getattr(renderer, "quality", None)
    extractor = get_extractor(edges, pidinet_weights)
    sheet, notes = show_sheet(paths, n, size, strategies, extractor, renderer, seed, category, banner=banner,
                              quality=quality)
    save_image(out, sheet)
    return out, standin, notes

"""`logical-synth show`: a few samples laid out as a contact sheet (a quick visual check).

Samples are made by build's own path (synth.pipeline: `prepare_source`, then `make_samples` with the same
seeds and retry policy) over the category's normal images indexed as build indexes them, each prepared on
first use. Row i asks for strategy i (modulo the list) through the SynthConfig a build given only that
strategy uses, so row i is the sample such a build makes at index i, and the one any build with the same seed
makes at index i whenever it draws that strategy there (same --size, --edges and renderer, no image skipped;
a generator renders in other batches here, equal up to its batch-size numerics). Only the sheet layout and
the renderer choice live here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from synth.datasets.toybox_truth import carrier_mask, is_part_edit, part_masks
from synth.edit.strategies import LOGICAL_STRATEGIES
from synth.pipeline import (
    PERLIN,
    Composed,
    Plan,
    SourceFeatures,
    Sources,
    SynthConfig,
    make_samples,
    plan_sample,
    prepare_source,
)
from synth.render.standin import StandInRenderer
from synth.rng import sample_rng
from synth.sheet import contact_sheet

COLUMNS = ["normal edge", "anomaly edge", "target mask", "anomaly", "normal"]
STANDIN_BANNER = "STAND-IN RENDERER - no fitted generator"


class LazySources:
    """The normal images `paths` as pipeline `Sources` (build's indexing), each prepared on first use."""

    def __init__(self, paths: list[Path], size: int, extractor, renderer, labels: list[Path] | None = None) -> None:
        from synth.datasets.bitdepth import data_depth

        self.paths, self.size, self.extractor, self.renderer = list(paths), size, extractor, renderer
        self.bits = data_depth(self.paths).bits     # the category's one scale, as build uses
        self.labels = labels
        self._ready: dict[int, SourceFeatures] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> SourceFeatures:
        if index not in self._ready:
            labels = self.labels[index] if self.labels else None
            self._ready[index] = prepare_source(self.paths[index], self.size, self.extractor, self.renderer,
                                                self.bits, labels)
        return self._ready[index]


def strategy_config(strategy: str) -> SynthConfig:
    """The SynthConfig of a build given `--strategies <strategy>` (default mix, no textures)."""
    from synth.edit.strategies import KIND_OF, STRATEGIES

    return SynthConfig(strategies=(strategy,), strategy_kinds=tuple((s, KIND_OF[s]) for s in STRATEGIES))


def show_samples(sources: Sources, n: int, strategies: list[str], seed: int, category: str, render,
                 quality: dict | None = None, kind: str = "global") -> list[tuple[Plan, Composed]]:
    """Samples 0..n-1, sample i with strategies[i % len(strategies)]: (accepted plan, composed sample);
    `kind` is the renderer's (global | inpaint)."""
    made: dict[int, tuple[Plan, Composed]] = {}
    for j, strategy in enumerate(strategies):
        indices = range(j, n, len(strategies))
        samples = make_samples(sources, indices, seed, category, strategy_config(strategy), render, Counter(),
                               quality, kind=kind)
        made.update(zip(indices, samples, strict=True))
    return [made[i] for i in range(n)]


def _mask_overlay(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Target region in dark grey, the final (SSIM) mask in white."""
    out = np.zeros(region.shape, np.uint8)
    out[region] = 90
    out[mask > 0] = 255
    return out


def sheet_row(sources: LazySources, plan: Plan, composed: Composed) -> tuple[list[np.ndarray], str]:
    """One sheet row (normal edge | anomaly edge | target mask | anomaly | normal) and its label."""
    src = sources[plan.source]
    edit = plan.edit
    region = edit.region if edit is not None else np.zeros(src.edge.shape, bool)
    anomaly_edge = edit.edge if edit is not None else src.edge
    label = f"#{plan.index} {plan.strategy} ({plan.kind}) src {Path(sources.paths[plan.source]).name}"
    if plan.sub:
        label += f"  try {plan.sub + 1}" + ("  FALLBACK" if plan.strategy == PERLIN else "")
    return [src.edge, anomaly_edge, _mask_overlay(region, composed.mask), composed.anomaly, src.image], label


def pick_renderer(dataset: str, category: str, generator: Path | None, edges: str, size: int):
    """(renderer, is_stand_in): the category's fitted generator when one exists, else the stand-in."""
    path = Path(generator) if generator is not None else Path("data") / dataset / category / "generator.pt"
    if generator is None and not path.is_file():
        return StandInRenderer(), True
    try:
        from synth.render.loader import load_generator
    except ImportError:  # the generator module is not installed in this checkout
        return StandInRenderer(), True
    return load_generator(path, edges=edges, size=size), False


def run_show(dataset: str, root: Path | None, category: str | None, n: int, out: Path, seed: int, size: int,
             strategies: list[str], edges: str, pidinet_weights: Path | None,
             generator: Path | None, regions: Path | None = None) -> tuple[Path, bool, list]:
    """Write the preview sheet of `n` samples; returns (path, used the stand-in renderer, row notes
    (index, strategy, kind, tries)). `regions`: part label images instead of the classical regions."""
    from synth.datasets import open_dataset
    from synth.datasets.images import save_image
    from synth.errors import DatasetError
    from synth.features.edges import get_extractor

    reader = open_dataset(dataset, root)
    cats = reader.categories()
    category = category or cats[0]
    if category not in cats:
        raise DatasetError(f"--category {category!r} is not in {reader.root}; it has {', '.join(cats)}")
    paths = reader.train_images(category)
    if len(paths) < 2:
        raise DatasetError(f"{reader.root}: category {category!r} has {len(paths)} normal training image(s); "
                           "at least 2 are needed (another image's edges are part of every edit)")
    from synth.datasets.part_labels import label_files

    labels = label_files(regions, paths, category) if regions is not None else None
    extractor = get_extractor(edges, pidinet_weights)
    renderer, standin = pick_renderer(dataset, category, generator, extractor.identity, size)
    banner = STANDIN_BANNER if standin else f"generator {renderer.identity} ({renderer.kind})"
    quality = None if standin else getattr(renderer, "quality", None)
    sources = LazySources(paths, size, extractor, renderer, labels)
    samples = show_samples(sources, n, strategies, seed, category, renderer.render, quality,
                           getattr(renderer, "kind", "global"))
    rows, labels = zip(*(sheet_row(sources, plan, composed) for plan, composed in samples), strict=True)
    save_image(out, contact_sheet(list(rows), list(labels), COLUMNS, banner=banner))
    return out, standin, [(p.index, p.strategy, p.kind, p.sub + 1) for p, _ in samples]


def other_source(seed: int, category: str, index: int, sub: int, n: int) -> int:
    """The source plan_sample took E_i from (its draws, in its order, from the attempt's stream)."""
    rng = sample_rng(seed, category, index, sub + 1)
    source = int(rng.integers(n))
    return (source + 1 + int(rng.integers(n - 1))) % n


def logical_edit_share(sources, index_of: list[int], n: int, size: int, seed: int, cover: float = 0.5,
                       category: str = "tray") -> dict[str, dict]:
    """{strategy: {"planned", "no_region", "on_part", "share"}}: the edits `build --strategies S` plans for
    samples 0..n-1 (plan_sample, same seeds) on `sources` (toybox `train` images `index_of[i]` prepared at
    `size`), judged by `is_part_edit`."""
    truth = {k: (part_masks(category, "train", k, size=size), carrier_mask(category, "train", k, size=size))
             for k in set(index_of)}
    out = {}
    for strategy in LOGICAL_STRATEGIES:
        config = strategy_config(strategy)
        planned = good = missing = 0
        for i in range(n):
            plan = plan_sample(sources, i, seed, category, config)
            if plan.edit is None:
                missing += 1
                continue
            planned += 1
            parts, carrier = truth[index_of[plan.source]]
            other = other_source(seed, category, i, plan.sub, len(sources))
            label = plan.edit.params.get("other_label")
            content = None if label is None else sources[other].regions == label
            good += is_part_edit(strategy, plan.edit.region, parts, carrier, content, truth[index_of[other]][0],
                                 size, cover)
        out[strategy] = {"planned": planned, "no_region": missing, "on_part": good,
                         "share": good / max(planned, 1)}
    return out

"""One sample, top to bottom: source features -> plan (kind, strategy, edit) -> render -> compose -> record.

`prepare_source` is paid once per normal image (build caches it in sources.h5). Every later choice for sample
`index` comes from `synth.rng.sample_rng(seed, category, index, sub)`: the synthesizer, kind and strategy from
sub-seed 0 (so rejections do not shift the requested mix), the source, region and edit from the attempt's own
sub-seed. A rejected attempt is redrawn with the next sub-seed, up to `SynthConfig.max_tries`; past that the
sample falls back to the Perlin baseline (recorded as strategy "perlin", rejection reason "fallback").

An unexpected exception while planning or composing one sample stops the build with a SampleError naming the
category, index, strategy, source and seeds that reproduce it: a planner bug should be seen, and replacing the
sample silently would change the dataset's mix. With `SynthConfig.skip_bad` the sample goes straight to the
Perlin fallback instead (rejection reason "failed", then "fallback"); it depends only on (seed, index), so the
shards stay the same for any worker count.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from synth.datasets.images import load_rgb, resize_rgb
from synth.edit.geometry import mask_bbox
from synth.edit.parts import NEEDS_OTHER
from synth.edit.perlin import perlin_anomaly
from synth.errors import LogicalError, SampleError
from synth.features.regions import jnd_and_foreground
from synth.rng import derive_seed, sample_rng
from synth.store.schema import KINDS

SYNTHESIZERS = ("logical", "perlin", "both")
PERLIN = "perlin"


@dataclass
class SourceFeatures:
    """Per normal image, what samples reuse; `edge` is the stored u8-quantised map as float [0, 1]."""

    image: np.ndarray            # (H, W, 3) uint8
    jnd: np.ndarray | None       # (H, W) float32, grey levels (None where only synthesis reads the source)
    edge: np.ndarray             # (H, W) float32 in [0, 1]
    foreground: np.ndarray       # (H, W) bool
    regions: np.ndarray          # (H, W) uint16 labels, 0 = not a candidate
    render: np.ndarray | None = None   # (H, W, 3) uint8 = G(E_j); None until rendered / without a generator
    collapsed: bool | None = None      # G(E_j) far below the generator's usual SSIM (checked once per source)


class Sources(Protocol):
    """Random access to the prepared sources of one category (a list, or build's sources.h5 reader)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> SourceFeatures: ...


def quantise_edge(edge: np.ndarray) -> np.ndarray:
    """Edges as stored in sources.h5 (u8 = round(edge * 255)); everything downstream uses this exact map."""
    return np.clip(np.rint(np.asarray(edge, np.float32) * 255.0), 0, 255).astype(np.uint8)




def prepare_source(path: Path, size: int, extractor, renderer=None, bits: int | None = None,
                   labels: Path | None = None) -> SourceFeatures:
    """Load and resize one normal image and compute its JND map, edges, foreground and candidate regions.

    `bits`: the data depth of the category's 16-bit files (synth.datasets.bitdepth.data_depth; None: the file's own).

    The render G(E_j) is made here only when `renderer` is given (build batches it over all sources instead).
    `labels`: a part label image (synth.datasets.part_labels) used as the regions instead of the classical ones; its
    parts join the foreground.
    """
    photo = load_rgb(path, bits)
    image = resize_rgb(photo, size)
    regions = None
    if labels is not None:
        from synth.datasets.part_labels import read_part_labels

        regions = read_part_labels(labels, photo.shape[:2], (image.shape[1], image.shape[0]))
    f = image_features(image, extractor, regions)
    render = None if renderer is None or getattr(renderer, "kind", "global") != "global" else \
        renderer.render(f.edge[None], image[None])[0]     # an inpainting R_N depends on the hole: per sample
    return SourceFeatures(image, f.jnd, f.edge, f.foreground, f.regions, render)


def image_features(image: np.ndarray, extractor, regions: np.ndarray | None = None) -> SourceFeatures:
    """JND map (float32 grey levels), edges (float32 [0, 1], quantised as stored), bool foreground and uint16
    regions of an RGB uint8 (H, W, 3) image already at the build size; no render. `regions` (part labels)
    replace the classical ones and join the foreground. Shared by `prepare_source` and imports (synth.importing).
    """
    from synth.features.regions import semantic_regions

    jnd, foreground = jnd_and_foreground(image)
    edge = quantise_edge(extractor(image)).astype(np.float32) / 255.0
    if regions is not None:
        foreground = foreground | (regions > 0)
    else:
        regions = np.asarray(semantic_regions(image, edge, foreground, jnd), np.uint16)
    return SourceFeatures(image, jnd, edge, foreground, regions, None)


@dataclass(frozen=True)
class SynthConfig:
    """What a sample may be: synthesizer, kind weights, strategies per kind, anomaly-source textures."""

    synthesizer: str = "logical"
    mix: tuple[tuple[str, float], ...] = (("logical", 0.5), ("structural", 0.5))
    strategies: tuple[str, ...] = ()                     # edit strategies (logical synthesizer)
    strategy_kinds: tuple[tuple[str, str], ...] = ()     # strategy -> kind
    anomaly_source: tuple[str, ...] = ()                 # Perlin texture files (DTD-like); () = self
    max_tries: int = 20
    skip_bad: bool = False                               # a sample that raises falls back to Perlin (else stops)

    @property
    def names(self) -> list[str]:
        """Strategy names as stored in the shards' `strategies` attribute (edit strategies, then "perlin")."""
        return [*self.strategies, PERLIN]


@dataclass
class Plan:
    """One attempt at sample `index`: what to make and, for the logical synthesizer, the edited edge map."""

    index: int
    sub: int
    seed: int                      # derive_seed(seed, category, index, sub): stored with the sample
    synthesizer: str               # "logical" or "perlin"
    kind: str
    strategy: str
    source: int
    rng: np.random.Generator       # the attempt's stream, continued by finish_sample
    edit: object | None = None     # synth.edit.edits.Edit for the logical synthesizer
    reason: str | None = None      # set when planning already failed (no valid region)
    other: int | None = None       # the source E_i (and, for recolour, its pixels) came from


@dataclass
class Composed:
    """A finished sample, or a rejection with its reason."""

    anomaly: np.ndarray | None
    mask: np.ndarray | None
    reason: str | None = None
    params: dict = field(default_factory=dict)


def _choose(rng: np.random.Generator, weights: Sequence[tuple[str, float]]) -> str:
    names, w = zip(*weights, strict=True)
    p = np.asarray(w, np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _what(seed: int, category: str, index: int, config: SynthConfig) -> tuple[str, str, str]:
    """Synthesizer, kind and strategy of sample `index`, fixed over its attempts (from sub-seed 0)."""
    rng = sample_rng(seed, category, index, 0)
    synthesizer = config.synthesizer
    if synthesizer == "both":
        synthesizer = PERLIN if rng.random() < 0.5 else "logical"
    if synthesizer == PERLIN:
        return PERLIN, "structural", PERLIN
    kinds = dict(config.strategy_kinds)
    mix = [(k, w) for k, w in config.mix if w > 0 and any(kinds[s] == k for s in config.strategies)]
    kind = _choose(rng, mix)
    options = [s for s in config.strategies if kinds[s] == kind]
    return "logical", kind, options[int(rng.integers(len(options)))]


def plan_sample(sources: Sources, index: int, seed: int, category: str, config: SynthConfig,
                sub: int = 0) -> Plan:
    """Attempt `sub` at sample `index`: choose the source and, for the logical synthesizer, plan the edit
    on its edge map with another source's edge map as E_i."""
    synthesizer, kind, strategy = _what(seed, category, index, config)
    if sub >= config.max_tries:                 # out of attempts: the Perlin baseline always succeeds
        synthesizer, kind, strategy = PERLIN, "structural", PERLIN
    rng = sample_rng(seed, category, index, sub + 1)
    n = len(sources)
    source = int(rng.integers(n))
    plan = Plan(index, sub, derive_seed(seed, category, index, sub), synthesizer, kind, strategy, source, rng)
    if synthesizer == PERLIN:
        return plan
    from synth.edit.strategies import plan_edit

    other = (source + 1 + int(rng.integers(n - 1))) % n
    src = sources[source]
    plan.other = other
    plan.edit = plan_edit(strategy, src.edge, src.foreground, src.regions, sources[other].edge, rng,
                          other_regions=sources[other].regions)
    if plan.edit is None:
        plan.reason = "no_region"
    return plan


def needs_render(plan: Plan) -> bool:
    """Whether the plan needs a generator call (painted edits change the normal pixels instead)."""
    from synth.edit.strategies import PAINTED

    return plan.synthesizer != PERLIN and plan.reason is None and plan.strategy not in PAINTED


def _texture(config: SynthConfig, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray | None:
    if not config.anomaly_source:
        return None
    path = config.anomaly_source[int(rng.integers(len(config.anomaly_source)))]
    return resize_rgb(load_rgb(Path(path)), (size[1], size[0]))


def finish_sample(plan: Plan, render_a: np.ndarray | None, source: SourceFeatures,
                  config: SynthConfig | None = None, quality: dict | None = None,
                  render_n: np.ndarray | None = None, other: SourceFeatures | None = None) -> Composed:
    """Compose the planned sample: paste the render R_A into the normal image where it differs from G(E_j)
    (logical), or make the Perlin anomaly. A rejection carries its reason: no_region, empty_mask, or
    collapsed_render when SSIM(G(E_j), normal) is far below the generator's usual value (its `quality`
    record; method.md step 6: checked once per source). compose's own R_A gate is not used: it costs a
    full-image SSIM per sample, more than the rest of the CPU work.

    `render_n` is the inpainting kind's R_N, rendered with this sample's hole (else the source's cached
    G(E_j) is used); its gate compares inside the hole, and its render is pasted unflattened (its texture
    is the image's own). `other` is the plan's other source (`plan.other`): whole-part edits
    (synth.edit.parts) read its pixels and regions (recolour)."""
    if plan.reason is not None:
        return Composed(None, None, plan.reason)
    if plan.synthesizer == PERLIN:
        texture = _texture(config or SynthConfig(), plan.rng, source.image.shape[:2])
        anomaly, mask, params = perlin_anomaly(source.image, plan.rng, source.foreground, texture)
        return Composed(anomaly, mask, "empty_mask" if params["empty"] else None, params)
    from synth.edit.compose import collapsed, compose, edit_hole
    from synth.edit.damage import DAMAGE, paint_damage
    from synth.edit.edits import apply_colour
    from synth.edit.parts import PARTS, paint_part

    edit = plan.edit
    if edit.strategy in PARTS:               # whole parts: moved, removed, recoloured with real pixels
        pair = None if other is None else (other.image, other.regions)
        result = paint_part(source.image, source.regions, source.foreground, edit, pair)
        return Composed(result.anomaly, result.mask, result.reason, dict(edit.params))
    if edit.strategy in DAMAGE:              # cracks, scratches, chips: painted on the normal pixels
        result = paint_damage(source.image, edit)
        return Composed(result.anomaly, result.mask, result.reason, dict(edit.params))
    edge_a = edit.edge
    if edit.strategy == "colour":            # no generator call: the normal pixels, colour-shifted
        render_a, reference, edge_a = apply_colour(source.image, edit.region, edit.params), source.image, None
    elif render_n is not None:
        if quality and collapsed(render_n, source.image, quality, within=edit_hole(edit.region)):
            return Composed(None, None, "collapsed_render")
        reference, edge_a = render_n, None
    else:
        if quality and source.collapsed is None:
            source.collapsed = bool(collapsed(source.render, source.image, quality))
        if source.collapsed:
            return Composed(None, None, "collapsed_render")
        reference = source.render
    result = compose(source.image, render_a, reference, edit.region, edge_a)
    return Composed(result.anomaly, result.mask, result.reason, dict(edit.params))


@dataclass
class Record:
    """One accepted sample as a shard row."""

    index: int
    anomaly: np.ndarray
    mask: np.ndarray
    source: int
    kind: int
    strategy: int
    seed: int
    bbox: tuple[int, int, int, int]



def make_samples(sources: Sources, indices: Sequence[int], seed: int, category: str, config: SynthConfig,
                 render: Callable[..., np.ndarray] | None,
                 rejections: Counter, quality: dict | None = None,
                 seconds: Counter | None = None, kind: str = "global") -> Iterator[tuple[Plan, Composed]]:
    """The accepted attempt (plan and composed sample) at each of `indices`, in order. Each round plans every
    pending sample, renders the logical ones in one batch, composes, and sends rejections to the next round
    with the next sub-seed. `rejections` counts reasons; `seconds` (optional) accumulates time per stage
    (plan, render, compose). `kind` is the renderer's (synth.edit.compose.Renderer): for "inpaint", R_A and R_N
    of each sample are rendered on its own hole, all in the same call. A sample whose planning or compose raises
    stops it with a SampleError, or with `config.skip_bad` takes the Perlin fallback (see the module docstring)."""
    seconds = Counter() if seconds is None else seconds
    pending = {i: 0 for i in indices}
    done: dict[int, tuple[Plan, Composed]] = {}
    while pending:
        if max(pending.values()) > config.max_tries + 100:
            raise LogicalError(f"sample {max(pending, key=pending.get)} of {category}: no acceptable anomaly "
                               f"after {config.max_tries + 100} attempts")
        t = time.perf_counter()
        plans, failed = [], {}
        for i, sub in pending.items():
            with _SampleGuard(sources, i, sub, seed, category, config, "planning", rejections) as guard:
                plans.append(plan_sample(sources, i, seed, category, config, sub))
            if guard.failed:
                failed[i] = config.max_tries
        seconds["plan"] += time.perf_counter() - t
        to_render = [p for p in plans if needs_render(p)]
        renders: dict[int, np.ndarray] = {}
        references: dict[int, np.ndarray] = {}
        if to_render:
            if render is None:
                raise LogicalError("the logical synthesizer needs a generator (renderer) but none was given")
            edges = np.stack([p.edit.edge for p in to_render]).astype(np.float32)
            normals = np.stack([sources[p.source].image for p in to_render])
            t = time.perf_counter()
            if kind == "inpaint":
                rendered = _render_holes(render, to_render, sources, edges, normals)
                references = dict(zip((p.index for p in to_render), rendered[len(to_render):], strict=True))
            else:
                rendered = render(edges, normals)
            renders = dict(zip((p.index for p in to_render), rendered[:len(to_render)], strict=True))
            seconds["render"] += time.perf_counter() - t
        t = time.perf_counter()
        pending = failed
        for p in plans:
            other = sources[p.other] if p.strategy in NEEDS_OTHER and p.reason is None else None
            with _SampleGuard(sources, p.index, p.sub, seed, category, config, "composing", rejections) as guard:
                out = finish_sample(p, renders.get(p.index), sources[p.source], config, quality,
                                    references.get(p.index), other)
            if guard.failed:
                pending[p.index] = config.max_tries
                continue
            if out.reason is not None:
                rejections[out.reason] += 1
                pending[p.index] = p.sub + 1
                continue
            if p.sub >= config.max_tries:
                rejections["fallback"] += 1
            done[p.index] = (p, out)
        seconds["compose"] += time.perf_counter() - t
    for i in indices:
        yield done.pop(i)


class _SampleGuard:
    """Context for one sample's planning or composing: an unexpected exception (not a LogicalError, which
    says what the user must fix) becomes a SampleError naming what reproduces it, or, with
    `config.skip_bad` (and attempts left before the Perlin fallback itself), `failed` and a "failed" count."""

    def __init__(self, sources: Sources, index: int, sub: int, seed: int, category: str, config: SynthConfig,
                 stage: str, rejections: Counter) -> None:
        self.args = (sources, index, sub, seed, category, config, stage)
        self.rejections, self.failed = rejections, False

    def __enter__(self) -> _SampleGuard:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, LogicalError) or not isinstance(exc, Exception):
            return False
        sources, index, sub, seed, category, config, stage = self.args
        if config.skip_bad and sub < config.max_tries:
            self.rejections["failed"] += 1
            self.failed = True
            return True
        raise SampleError(_failure(exc, *self.args)) from exc


def _failure(exc: BaseException, sources: Sources, index: int, sub: int, seed: int, category: str,
             config: SynthConfig, stage: str) -> str:
    """What failed and how to reproduce it: the plan's choices, redrawn as plan_sample draws them."""
    _, kind, strategy = _what(seed, category, index, config)
    if sub >= config.max_tries:
        kind, strategy = "structural", PERLIN
    source = int(sample_rng(seed, category, index, sub + 1).integers(len(sources)))
    name = sources.name(source) if hasattr(sources, "name") else f"#{source}"
    return (f"{category}: sample {index} failed while {stage} (strategy {strategy}, {kind}; source {source}: "
            f"{name}; attempt {sub}, sample seed {derive_seed(seed, category, index, sub)}, build --seed {seed}): "
            f"{type(exc).__name__}: {exc}. This is a bug; please report it with this message "
            f"(reproduce: synth.pipeline.plan_sample(sources, {index}, {seed}, {category!r}, config, sub={sub})). "
            "Shards already written are kept: rerun the same command to resume, or add --skip-bad to replace "
            "such samples by Perlin anomalies (counted as rejection 'failed' in the report).")


def _render_holes(render: Callable[..., np.ndarray], plans: list[Plan], sources: Sources, edges: np.ndarray,
                  normals: np.ndarray) -> np.ndarray:
    """The inpainting kind's renders: R_A of every plan (edited edges), then R_N (the source's edges), each
    on its plan's hole (synth.edit.compose.edit_hole), in one call."""
    from synth.edit.compose import edit_hole

    holes = np.stack([edit_hole(p.edit.region) for p in plans])
    originals = np.stack([sources[p.source].edge for p in plans]).astype(np.float32)
    return render(np.concatenate([edges, originals]), np.concatenate([normals, normals]),
                  np.concatenate([holes, holes]))


def synthesize(sources: Sources, indices: Sequence[int], seed: int, category: str, config: SynthConfig,
               render: Callable[..., np.ndarray] | None,
               rejections: Counter, quality: dict | None = None,
               seconds: Counter | None = None, kind: str = "global") -> Iterator[Record]:
    """Make the samples `indices` in order (`make_samples`, `kind` of the renderer), as shard rows."""
    names = config.names
    for p, out in make_samples(sources, indices, seed, category, config, render, rejections, quality, seconds,
                               kind):
        yield Record(p.index, out.anomaly, out.mask, p.source, KINDS.index(p.kind), names.index(p.strategy),
                     p.seed, mask_bbox(out.mask))

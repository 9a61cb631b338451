"""`logical-synth build`: prepare each category's sources once, then make shards in parallel, resumably.

One build, top to bottom: `build` -> `build_category` -> synth.sources.prepare (per-source features into
`sources.h5`, reused while its key matches) -> `make_shard` per shard, which runs synth.pipeline.synthesize
for its samples and writes them with synth.store.shards.ShardWriter -> `finalize` (manifest and report).

Shard k holds samples [k*S, (k+1)*S) and is an independent task (`make_shard(job, k)`) that reads sources.h5
and writes shard k atomically, so any worker, backend (loky, dask) or machine (`--shards A-B`) makes the same
bytes. Each finished shard gets a sidecar `.build/shard-NNNNN.h5.json` (sha256, size, counts, the build key);
a rerun keeps shards whose sidecar and checksum verify and remakes the rest. When every shard is there (or
with `finalize=True`) the manifest is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth import __version__, defaults
from synth.console import say
from synth.datasets.bitdepth import data_depth
from synth.datasets.decode import broken_link
from synth.datasets.images import is_image_entry
from synth.errors import CheckpointError, DatasetError, ImageError, LogicalError, ShardError
from synth.jobs import (
    BACKENDS,
    Job,
    _backend,
    _generate,
    _out_of_disk,
    _read_json,
    _shard_problem,
    _write_json,
    finalize,
    shard_done,
)
from synth.lock import folder_lock
from synth.pipeline import PERLIN, SYNTHESIZERS, SynthConfig
from synth.render.server import RENDER_MODES, RenderServer, use_server
from synth.sources import BUILD_DIR, close_stores, content_key, prepare
from synth.store.atomic import atomic_path, sha256_file
from synth.store.schema import GENERATOR, KINDS, MANIFEST, SOURCES


def parse_mix(mix: str | dict | None) -> tuple[tuple[str, float], ...]:
    """`logical=0.5,structural=0.5` -> ((kind, weight), ...); weights are normalised later."""
    if mix is None:
        mix = defaults.MIX
    items = mix.items() if isinstance(mix, dict) else [p.partition("=")[::2] for p in str(mix).split(",")]
    out = {}
    for kind, weight in items:
        kind = str(kind).strip()
        if kind not in KINDS:
            raise LogicalError(f"--mix {mix}: unknown kind {kind!r} (use {', '.join(KINDS)}, e.g. "
                               "logical=0.5,structural=0.5)")
        try:
            out[kind] = float(weight)
        except (TypeError, ValueError):
            raise LogicalError(f"--mix {mix}: weight of {kind} is not a number "
                               "(e.g. logical=0.5,structural=0.5)") from None
        if not np.isfinite(out[kind]) or out[kind] < 0:
            raise LogicalError(f"--mix {mix}: weights must be non-negative numbers")
    if sum(out.values()) <= 0:
        raise LogicalError(f"--mix {mix}: at least one kind needs a positive weight")
    return tuple(out.items())


def strategy_kinds() -> dict[str, str]:
    """Every edit strategy and the kind it makes (from synth.edit.strategies)."""
    from synth.edit.strategies import KIND_OF, STRATEGIES

    return {s: KIND_OF[s] for s in STRATEGIES}


def parse_strategies(strategies: str | Sequence[str] | None, kinds: dict[str, str]) -> tuple[str, ...]:
    """Comma-separated strategy names (None: DEFAULT_STRATEGIES), checked against synth.edit.strategies."""
    if strategies is None:
        from synth.edit.strategies import DEFAULT_STRATEGIES

        return tuple(s for s in DEFAULT_STRATEGIES if s in kinds)
    names = [s.strip() for s in strategies.split(",")] if isinstance(strategies, str) else list(strategies)
    unknown = [s for s in names if s not in kinds]
    if unknown or not names:
        raise LogicalError(f"--strategies {','.join(names)}: unknown strategy "
                           f"{', '.join(unknown) or '(none)'} (choose from {', '.join(kinds)})")
    return tuple(dict.fromkeys(names))


def parse_shards(shards: str | Sequence[int] | None, count: int) -> list[int]:
    """`A-B` (inclusive) or `A` -> shard numbers, checked against the build's `count` shards."""
    if shards is None:
        return list(range(count))
    try:
        if isinstance(shards, str):
            lo, _, hi = shards.partition("-")
            lo, hi = int(lo), int(hi or lo)
        else:
            lo, hi = int(shards[0]), int(shards[-1])
    except (ValueError, IndexError):
        raise LogicalError(f"--shards {shards}: expected A-B (e.g. 0-9) or a single shard number") from None
    if not 0 <= lo <= hi < count:
        raise LogicalError(f"--shards {shards}: this build has {count} shards, numbered 0-{count - 1}")
    return list(range(lo, hi + 1))


def _resolve_generator(generator: Path | None, directory: Path, dataset: str, root: Path | None,
                       category: str, size: int, edges: str, weights: str | None, device: str,
                       bits: int | None = None) -> Path:
    """The generator for a category, kept as <dir>/generator.pt: given, found, or fitted now (on the
    category's data depth `bits`, decided once by the caller)."""
    target = directory / GENERATOR
    if generator is not None:
        generator = Path(generator)
        if not generator.is_file():
            raise CheckpointError(f"--generator {generator}: no such file")
        if not target.is_file() or sha256_file(target) != sha256_file(generator):
            with atomic_path(target) as tmp:
                shutil.copyfile(generator, tmp)
        return target
    if target.is_file():
        return target
    default = Path("data") / dataset / category / GENERATOR
    if default.is_file() and default.resolve() != target.resolve():
        say(f"{category}: using the generator {default}")
        with atomic_path(target) as tmp:
            shutil.copyfile(default, tmp)
        return target
    from synth.render.fitting import fit_for_category

    say(f"{category}: no generator at {target}; fitting one first (preset tiny at {size} px, "
        f"{edges} edges; give --generator to use another)")
    return fit_for_category(dataset, root, category, size=size, out=target, edges=edges,
                            pidinet_weights=Path(weights) if weights else None, device=device, bits=bits)


def _textures(anomaly_source: Path | None) -> tuple[str, ...]:
    if anomaly_source is None:
        return ()
    files = [p for p in sorted(Path(anomaly_source).rglob("*")) if is_image_entry(p)]
    broken = [problem for p in files if (problem := broken_link(p))]
    if broken:
        raise ImageError(f"--anomaly-source: {broken[0]}" + (f" (and {len(broken) - 1} more)" if broken[1:] else ""))
    if not files:
        raise DatasetError(f"--anomaly-source {anomaly_source}: no images found")
    return tuple(str(p.resolve()) for p in files)


def _load_renderer(gen_path: Path, edges: str, size: int, device: str) -> tuple:
    """(renderer, its manifest entry {sha256, size}); CheckpointError when the file changed while loading."""
    from synth.render.loader import load_generator

    renderer = load_generator(gen_path, edges=edges, size=size, device=device)
    entry = {"sha256": sha256_file(gen_path), "size": gen_path.stat().st_size}
    if not renderer.identity.endswith(entry["sha256"][:12]):
        raise CheckpointError(f"{gen_path}: changed while the build was loading it; run it again")
    return renderer, entry


def _sort_shards(job: Job, todo_range: list[int], prepared) -> tuple[list[int], list[int], list[str]]:
    """(shards kept because they verify, shards to make, why each remade one is remade), said aloud."""
    directory = Path(job.directory)
    problems = {k: _shard_problem(directory, k, job.key) for k in todo_range}
    kept = [k for k in todo_range if problems[k] is None]
    todo = [k for k in todo_range if k not in kept]
    if kept:
        say(f"{job.category}: keeping {len(kept)} complete shard(s) (checksums verified), making {len(todo)}")
    changed = [problems[k] for k in todo if problems[k] not in ("missing", "other build")]
    if prepared.remade:
        changed.insert(0, f"{prepared.path}: {prepared.remade}")
    for why in changed:
        say(f"{job.category}: remaking {why}")
    return kept, todo, changed


def _make_shards(job: Job, todo: list[int], n_jobs: int, server: bool, workers: int) -> dict[int, dict]:
    """Make shards `todo` (rendering in one server process when `server`); {shard: its sidecar}."""
    try:
        with (RenderServer(Path(job.generator), job.edges, job.size, job.device) if server
              else contextlib.nullcontext()) as remote:
            if remote is not None:
                say(f"{job.category}: rendering in one process on {job.device} for all {workers} worker(s)")
                job = dataclasses.replace(job, remote=remote)
            return {s["shard"]: s for s in _generate(job, todo, n_jobs)} if todo else {}
    finally:
        close_stores()


def build_category(reader, category: str, *, n: int, size: int, out: Path, seed: int, shard_size: int,
                   workers: int, generator: Path | None, edges: str, pidinet_weights: Path | None,
                   strategies, mix, synthesizer: str, shards, finalize_now: bool, backend: str,
                   scheduler: str | None, skip_bad: bool, device: str, anomaly_source: Path | None,
                   render: str = "auto", regions: Path | None = None) -> dict:
    """Prepare, generate and (when complete) finalize one category; its report. `regions`: a folder of part
    label images (synth.datasets.part_labels) used instead of the classical semantic regions."""
    from synth.datasets.part_labels import label_files
    from synth.features.edges import get_extractor

    times = {}
    directory = (Path(out) / reader.name / category).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    count = -(-n // shard_size)
    todo_range = parse_shards(shards, count)
    weights = str(Path(pidinet_weights).resolve()) if pidinet_weights else None
    extractor = get_extractor(edges, Path(weights) if weights else None)
    paths = reader.train_images(category)
    if len(paths) < 2:
        raise DatasetError(f"{reader.root}: category {category!r} has {len(paths)} normal training image(s); "
                           "at least 2 are needed")
    labels = label_files(regions, paths, category) if regions is not None else None
    depth = data_depth(paths)       # one scale for every 16-bit image of the category
    gen_path, renderer, verified = None, None, {}
    if synthesizer != PERLIN:
        t = time.perf_counter()
        gen_path = _resolve_generator(generator, directory, reader.name, reader.root, category, size, edges,
                                      weights, device, depth.bits)
        times["fit_generator"] = time.perf_counter() - t
        renderer, verified[GENERATOR] = _load_renderer(gen_path, extractor.identity, size, device)
    if depth.bits is not None:
        say(f"{category}: images are {depth.describe()}")
    attrs = {"size": size, "dataset": reader.name, "category": category, "edges": extractor.identity,
             "bits": depth.bits or 0}
    with _backend(backend, scheduler, workers) as n_jobs:
        t = time.perf_counter()
        prepared = prepare(paths, Path(reader.root), directory, size, edges, weights, renderer, attrs,
                           n_jobs, skip_bad, labels)
        times["prepare"] = time.perf_counter() - t
        if prepared.seconds is not None:    # made now, not reused: its time goes into the report
            _write_json(directory / BUILD_DIR / "prepare.json",
                        {"seconds": prepared.seconds, "sources": prepared.sources, "skipped": prepared.skipped})
        kinds = tuple(strategy_kinds().items()) if strategies else ()
        synth = SynthConfig(synthesizer, mix, strategies, kinds, _textures(anomaly_source))
        config = {"dataset": reader.name, "category": category, "n": n, "size": size, "seed": seed,
                  "shard_size": shard_size, "edges": extractor.identity, "synthesizer": synthesizer,
                  "generator": getattr(renderer, "identity", None), "strategies": list(strategies),
                  "mix": dict(mix), "anomaly_source": str(anomaly_source) if anomaly_source else None,
                  "textures": len(synth.anomaly_source), "max_tries": synth.max_tries, "tool": __version__}
        verified[SOURCES] = {"sha256": prepared.sha256, "size": prepared.size}
        key = content_key({**config, "sources": prepared.sha256,
                           "texture_files": synth.anomaly_source})
        concurrent = workers if backend == "loky" else 1
        job = Job(str(directory), category, seed, n, shard_size, size, synth,
                  str(gen_path) if gen_path else None, extractor.identity, device, key, concurrent)
        old = _read_json(directory / MANIFEST)
        if old is not None and old.get("report", {}).get("key") != key:
            (directory / MANIFEST).unlink(missing_ok=True)    # it describes another build
        t = time.perf_counter()
        kept, todo, changed = _sort_shards(job, todo_range, prepared)
        server = bool(todo) and gen_path is not None and use_server(render, device, backend)
        fresh = _make_shards(job, todo, n_jobs, server, workers)
        times["generate"] = time.perf_counter() - t
    made = sum(s["count"] for s in fresh.values())
    report = {"dataset": reader.name, "category": category, "out": str(directory), "key": key,
              "shards": {"total": count, "made": len(fresh), "kept": len(kept)}, "skipped": prepared.skipped,
              "bit_depth": depth.describe(),
              "sources": "reused" if prepared.seconds is None else "made", "remade": changed,
              "workers": workers, "backend": backend, "render": "server" if server else "inline",
              "seconds": {k: round(v, 3) for k, v in times.items()},
              "samples_made": made, "samples_per_second": round(made / max(times["generate"], 1e-9), 2)}
    complete = all(k in fresh or shard_done(directory, k, key, checksum=False) for k in range(count))
    if finalize_now or complete:
        t = time.perf_counter()
        meta = {"dataset": reader.name, "licence": getattr(reader, "licence", "unknown"), "config": config,
                "report": report}
        checked = {k: shard_done(directory, k, key, checksum=False) for k in kept}   # verified above
        manifest = finalize(job, meta, {**{k: s for k, s in checked.items() if s}, **fresh}, verified)
        report = manifest["report"]
        report["seconds"]["finalize"] = round(time.perf_counter() - t, 3)
    return report


def build(dataset: str, root: Path | None, categories: Sequence[str] | None, n: int, size: int = 256,
          out: Path = Path("data"), seed: int = 0, shard_size: int = 1000, workers: int = 1,
          generator: Path | None = None, edges: str = defaults.EDGES, pidinet_weights: Path | None = None,
          strategies: str | Sequence[str] | None = None, mix: str | dict | None = None,
          synthesizer: str = defaults.SYNTHESIZER, shards: str | None = None, finalize: bool = False,
          backend: str = "loky", scheduler: str | None = None, skip_bad: bool = False, device: str = "auto",
          anomaly_source: Path | None = None, render: str = "auto", regions: Path | None = None) -> dict:
    """Build generated datasets under <out>/<dataset>/<category>/ for each category; {category: report}."""
    from synth.datasets import open_dataset

    if n <= 0 or shard_size <= 0 or workers <= 0 or size < 16:
        raise LogicalError(f"--n {n}, --shard-size {shard_size}, --workers {workers} must be positive and "
                           f"--size {size} at least 16")
    if synthesizer not in SYNTHESIZERS:
        raise LogicalError(f"--synthesizer {synthesizer}: choose one of {', '.join(SYNTHESIZERS)}")
    if backend not in BACKENDS:
        raise LogicalError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if scheduler and backend != "dask":
        raise LogicalError("--scheduler needs --backend dask")
    if render not in RENDER_MODES:
        raise LogicalError(f"--render {render}: choose {', '.join(RENDER_MODES)}")
    if render == "server" and scheduler:
        raise LogicalError("--render server needs workers on this machine; with --scheduler use --render inline")
    if anomaly_source is not None and not Path(anomaly_source).is_dir():
        raise DatasetError(f"--anomaly-source {anomaly_source}: not a folder")
    if regions is not None and not Path(regions).is_dir():
        raise DatasetError(f"--regions {regions}: not a folder")
    mix = parse_mix(mix)
    chosen = () if synthesizer == PERLIN else parse_strategies(strategies, strategy_kinds())
    if chosen:
        kinds = strategy_kinds()
        usable = [k for k, w in mix if w > 0 and any(kinds[s] == k for s in chosen)]
        if not usable:
            raise LogicalError(f"--mix {dict(mix)} and --strategies {','.join(chosen)}: no kind with a "
                               "positive weight has a strategy")
    reader = open_dataset(dataset, root)
    available = reader.categories()
    if not categories and reader.problems:     # every category: one linked in whose target moved is lost data
        if not skip_bad:
            raise DatasetError("; ".join(reader.problems) + " (fix the link, or --skip-bad to build the others)")
        say("skipping: " + "; ".join(reader.problems))
    categories = list(categories or available)
    unknown = [c for c in categories if c not in available]
    if unknown:
        raise DatasetError("--category " + "; ".join(reader.unknown_category(c) for c in unknown))
    reports = {}
    for category in categories:
        # one writer per category folder; `--shards A-B` workers of one build share it on purpose
        lock = folder_lock(Path(out) / reader.name / category) if shards is None else contextlib.nullcontext()
        with lock:
            try:
                reports[category] = build_category(
                reader, category, n=n, size=size, out=Path(out), seed=seed, shard_size=shard_size,
                workers=workers, generator=generator, edges=edges, pidinet_weights=pidinet_weights,
                strategies=chosen, mix=mix, synthesizer=synthesizer, shards=shards, finalize_now=finalize,
                backend=backend, scheduler=scheduler, skip_bad=skip_bad, device=device,
                anomaly_source=Path(anomaly_source) if anomaly_source else None, render=render,
                regions=Path(regions) if regions else None)
            except OSError as exc:
                if not _out_of_disk(exc):
                    raise
                raise ShardError(f"{Path(out) / reader.name / category}: out of disk space ({exc}). Every shard "
                                 "already written is complete and kept; free space and rerun the same command "
                                 "to resume.") from None
    return reports


def format_report(reports: dict) -> str:
    """The end-of-build summary printed by the CLI."""
    lines = []
    for category, r in reports.items():
        counts = r.get("counts")
        shards = r["shards"]
        lines.append(f"{r['dataset']}/{category}: {r['out']}")
        pending = "" if counts else "  (not finalized: make the remaining --shards, then --finalize)"
        lines.append(f"  shards: {shards['made']} made, {shards['kept']} kept, "
                     f"{shards['total']} in all{pending}")
        if counts:
            lines.append(f"  samples: {counts['samples']}  by kind: {counts['by_kind']}")
            lines.append(f"  by strategy: {counts['by_strategy']}")
            lines.append(f"  rejections: {counts['rejections'] or 'none'}")
        if r.get("bit_depth", "8-bit files") != "8-bit files":
            lines.append(f"  images: {r['bit_depth']}")
        lines.append(f"  time (s): {r['seconds']}; {r['samples_made']} samples made at "
                     f"{r['samples_per_second']} samples/s")
        if r.get("remade"):
            lines.append("  remade, as they did not verify against what the build recorded:\n    "
                         + "\n    ".join(r["remade"]))
        if r["skipped"]:
            lines.append(f"  skipped unreadable images: {', '.join(r['skipped'])}")
    return "\n".join(lines)

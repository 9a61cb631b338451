"""`logical-synth build`: prepare each category's sources once, then make shards in parallel, resumably.

One build, top to bottom: `build` -> `build_category` -> synth.sources.prepare (per-source features into
`sources.h5`, reused while its key matches) -> `make_shard` per shard, which runs synth.pipeline.synthesize
for its samples and writes them with synth.shards.ShardWriter -> `finalize` (manifest and report).

Shard k holds samples [k*S, (k+1)*S) and is an independent task (`make_shard(job, k)`) that reads sources.h5
and writes shard k atomically, so any worker, backend (loky, dask) or machine (`--shards A-B`) makes the same
bytes. Each finished shard gets a sidecar `.build/shard-NNNNN.h5.json` (sha256, size, counts, the build key);
a rerun keeps shards whose sidecar and checksum verify and remakes the rest. When every shard is there (or
with `finalize=True`) the manifest is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth import __version__, defaults
from synth.bitdepth import data_depth
from synth.console import progress, say
from synth.errors import CheckpointError, DatasetError, ImageError, LogicalError, ShardError
from synth.images import broken_link, is_image_entry
from synth.pipeline import PERLIN, SYNTHESIZERS, SynthConfig, synthesize
from synth.render.server import RENDER_MODES, RemoteRenderer, RenderServer, use_server
from synth.shards import (
    GENERATOR,
    KINDS,
    MANIFEST,
    SHARD_PATTERN,
    SOURCES,
    ShardWriter,
    atomic_path,
    check_space,
    h5_writer_state,
    sha256_file,
    shard_name,
    write_manifest,
)
from synth.sources import BUILD_DIR, RENDER_BATCH, close_stores, content_key, open_store, prepare

BACKENDS = ("loky", "dask")


# ---------------------------------------------------------------- options

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
    """Every edit strategy and the kind it makes (from synth.edits)."""
    from synth.edits import KIND_OF, STRATEGIES

    return {s: KIND_OF[s] for s in STRATEGIES}


def parse_strategies(strategies: str | Sequence[str] | None, kinds: dict[str, str]) -> tuple[str, ...]:
    """Comma-separated strategy names (None: synth.edits.DEFAULT_STRATEGIES), checked against synth.edits."""
    if strategies is None:
        from synth.edits import DEFAULT_STRATEGIES

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


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")   # unique: concurrent array tasks may race
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _out_of_disk(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left" in str(exc))


# ---------------------------------------------------------------- generate shards

@dataclass(frozen=True)
class Job:
    """Everything a shard task needs (picklable; the same on every worker and machine)."""

    directory: str
    category: str
    seed: int
    n: int
    shard_size: int
    size: int
    synth: SynthConfig
    generator: str | None
    edges: str
    device: str
    key: str
    concurrent: int = 1     # shard tasks writing at once (for the free-space check)
    remote: RemoteRenderer | None = None   # the render process (--render server); None: load it in-process

    @property
    def shard_count(self) -> int:
        return -(-self.n // self.shard_size)


def _sidecar(directory: Path, k: int) -> Path:
    return Path(directory) / BUILD_DIR / f"{shard_name(k)}.json"


def make_shard(job: Job, k: int) -> dict:
    """Make shard k (samples [k*S, min((k+1)*S, n))) from sources.h5 and write it atomically; its stats."""
    t0 = time.perf_counter()
    directory = Path(job.directory)
    sources = open_store(directory / SOURCES)
    render, quality, kind = None, None, "global"
    if job.remote is not None:
        render, quality, kind = job.remote.render, job.remote.quality, job.remote.kind
    elif job.generator is not None:
        from synth.render.generator import load_generator

        renderer = load_generator(Path(job.generator), edges=job.edges, size=job.size, device=job.device)
        render, quality, kind = renderer.render, renderer.quality, renderer.kind
    first, count = k * job.shard_size, min(job.shard_size, job.n - k * job.shard_size)
    names = job.synth.names
    rejections, by_kind, by_strategy, seconds = Counter(), Counter(), Counter(), Counter()
    path = directory / shard_name(k)
    check_space(directory, shard_name(k), count * job.size * job.size * 4, job.concurrent)
    with ShardWriter(path, first, count, job.size, job.size, names) as writer:
        for start in range(first, first + count, RENDER_BATCH):
            indices = range(start, min(start + RENDER_BATCH, first + count))
            for rec in synthesize(sources, indices, job.seed, job.category, job.synth, render, rejections,
                                  quality, seconds, kind):
                t = time.perf_counter()
                writer.append(rec.anomaly, rec.mask, rec.source, rec.kind, rec.strategy, rec.seed, rec.bbox)
                seconds["write"] += time.perf_counter() - t
                by_kind[KINDS[rec.kind]] += 1
                by_strategy[names[rec.strategy]] += 1
    stats = {"key": job.key, "shard": k, "sha256": sha256_file(path), "size": path.stat().st_size,
             "count": count, "by_kind": dict(by_kind), "by_strategy": dict(by_strategy),
             "rejections": dict(rejections), "seconds": {**seconds, "total": time.perf_counter() - t0}}
    _write_json(_sidecar(directory, k), stats)
    return stats


def shard_done(directory: Path, k: int, key: str, checksum: bool = True) -> dict | None:
    """The sidecar stats of shard k when the shard is complete, of this build, and its checksum verifies."""
    return None if _shard_problem(directory, k, key, checksum) else _read_json(_sidecar(directory, k))


def _shard_problem(directory: Path, k: int, key: str, checksum: bool = True) -> str | None:
    """Why shard k cannot be kept ("missing", "other build", or how it changed since it was written)."""
    stats = _read_json(_sidecar(directory, k))
    path = Path(directory) / shard_name(k)
    if not stats or stats.get("key") != key or not path.is_file():
        return "missing" if not stats or not path.is_file() else "other build"
    state = h5_writer_state(path)
    if state:
        return state
    if path.stat().st_size != stats.get("size") or (checksum and sha256_file(path) != stats.get("sha256")):
        return f"{path}: changed after the build wrote it (sha256 differs from the one recorded at write time)"
    return None


@contextlib.contextmanager
def _backend(backend: str, scheduler: str | None, workers: int) -> Iterator[int]:
    """joblib's loky pool, or its dask backend on `scheduler` (a local cluster when none is given)."""
    import joblib

    if backend == "loky":
        with joblib.parallel_config(backend="loky", n_jobs=workers), warnings.catch_warnings():
            # loky recycles a worker whose memory grew (the generator's weights) and warns; no job is lost
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given")
            yield workers
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise LogicalError("--backend dask needs dask[distributed] (pip install 'logical[dask]')") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise LogicalError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        cluster = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1")
        client = Client(cluster)
    try:
        with joblib.parallel_config(backend="dask"):
            yield -1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _generate(job: Job, todo: list[int], n_jobs: int) -> list[dict]:
    from joblib import Parallel, delayed

    tasks = (delayed(make_shard)(job, k) for k in todo)
    runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    return list(progress(runner(tasks), desc=f"{job.category}: shards", total=len(todo)))


# ---------------------------------------------------------------- finalize: manifest and report

def _ranges(ks: list[int]) -> str:
    out, start = [], None
    for i, k in enumerate(ks):
        start = k if start is None else start
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            out.append(f"{start}" if start == k else f"{start}-{k}")
            start = None
    return ", ".join(out)


def _tidy(directory: Path, count: int) -> None:
    """Drop leftovers: shards beyond this build's count (with sidecars) and shard tmp files of killed runs."""
    for p in directory.iterdir():
        m = SHARD_PATTERN.match(p.name.removesuffix(".tmp"))
        if m and (int(m.group(1)) >= count or p.name.endswith(".tmp")):
            p.unlink(missing_ok=True)
            if int(m.group(1)) >= count:
                _sidecar(directory, int(m.group(1))).unlink(missing_ok=True)


def finalize(job: Job, meta: dict, fresh: dict[int, dict] | None = None,
             verified: dict[str, dict] | None = None) -> dict:
    """Check every shard, then write manifest.json with counts, rejections, timings and every file's sha256.

    `fresh`: stats of shards this run just made or verified (their checksums were computed as they were
    written, or checked against those). `verified`: {name: {"sha256", "size"}} of the other files this run
    wrote or verified (sources.h5, generator.pt). The manifest lists exactly these files with exactly these
    checksums: it never seals a file that this run neither wrote nor verified.
    """
    directory, fresh = Path(job.directory), fresh or {}
    stats, missing = [], []
    for k in range(job.shard_count):
        s = fresh.get(k) or shard_done(directory, k, job.key)
        (stats.append(s) if s else missing.append(k))
    files = {**(verified or {}), **{shard_name(s["shard"]): {"sha256": s["sha256"], "size": s["size"]}
                                    for s in stats}}
    if missing:
        raise ShardError(f"{directory}: shards {_ranges(missing)} of {job.shard_count} are missing or do not "
                         "verify; make them (e.g. `--shards A-B`), then run with --finalize")
    _tidy(directory, job.shard_count)
    counts = {"samples": sum(s["count"] for s in stats)}
    for field in ("by_kind", "by_strategy", "rejections"):
        total = Counter()
        for s in stats:
            total.update(s[field])
        counts[field] = dict(sorted(total.items()))
    cpu = Counter()
    for s in stats:
        cpu.update(s["seconds"])
    report = {**meta.get("report", {}), "counts": counts,
              "shard_cpu_seconds": {k: round(v, 3) for k, v in sorted(cpu.items())},
              "samples_per_cpu_second": round(counts["samples"] / max(cpu["total"], 1e-9), 2)}
    prepared = _read_json(directory / BUILD_DIR / "prepare.json") or {}
    report["prepare_seconds"] = round(prepared.get("seconds", 0.0), 3)
    manifest = {"dataset": meta["dataset"], "category": job.category, "licence": meta["licence"],
                "config": meta["config"], "seed": job.seed, "n": job.n, "shard_size": job.shard_size,
                "counts": counts, "report": report}
    write_manifest(directory, manifest, known=files, only_known=True)
    return manifest


# ---------------------------------------------------------------- the whole build

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


def build_category(reader, category: str, *, n: int, size: int, out: Path, seed: int, shard_size: int,
                   workers: int, generator: Path | None, edges: str, pidinet_weights: Path | None,
                   strategies, mix, synthesizer: str, shards, finalize_now: bool, backend: str,
                   scheduler: str | None, skip_bad: bool, device: str, anomaly_source: Path | None,
                   render: str = "auto", regions: Path | None = None) -> dict:
    """Prepare, generate and (when complete) finalize one category; its report. `regions`: a folder of part
    label images (synth.part_labels) used instead of the classical semantic regions."""
    from synth.edges import get_extractor
    from synth.part_labels import label_files

    times = {}
    directory = (Path(out) / reader.name / category).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    count = -(-n // shard_size)
    todo_range = parse_shards(shards, count)
    weights = str(Path(pidinet_weights).resolve()) if pidinet_weights else None
    extractor = get_extractor(edges, Path(weights) if weights else None)
    from synth.holdout import set_aside

    paths, calibration = set_aside(reader, category, reader.train_images(category), seed)
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
        from synth.render.generator import load_generator

        renderer = load_generator(gen_path, edges=extractor.identity, size=size, device=device)
        verified[GENERATOR] = {"sha256": sha256_file(gen_path), "size": gen_path.stat().st_size}
        if not renderer.identity.endswith(verified[GENERATOR]["sha256"][:12]):
            raise CheckpointError(f"{gen_path}: changed while the build was loading it; run it again")
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
        problems = {k: _shard_problem(directory, k, key) for k in todo_range}
        kept = [k for k in todo_range if problems[k] is None]
        todo = [k for k in todo_range if k not in kept]
        if kept:
            say(f"{category}: keeping {len(kept)} complete shard(s) (checksums verified), making {len(todo)}")
        changed = [problems[k] for k in todo if problems[k] not in ("missing", "other build")]
        if prepared.remade:
            changed.insert(0, f"{prepared.path}: {prepared.remade}")
        for why in changed:
            say(f"{category}: remaking {why}")
        server = bool(todo) and gen_path is not None and use_server(render, device, backend)
        try:
            with (RenderServer(gen_path, extractor.identity, size, device) if server
                  else contextlib.nullcontext()) as remote:
                if remote is not None:
                    say(f"{category}: rendering in one process on {device} for all {workers} worker(s)")
                    job = dataclasses.replace(job, remote=remote)
                fresh = {s["shard"]: s for s in _generate(job, todo, n_jobs)} if todo else {}
        finally:
            close_stores()
        times["generate"] = time.perf_counter() - t
    made = sum(s["count"] for s in fresh.values())
    report = {"dataset": reader.name, "category": category, "out": str(directory), "key": key,
              "shards": {"total": count, "made": len(fresh), "kept": len(kept)}, "skipped": prepared.skipped,
              "calibration": calibration, "bit_depth": depth.describe(),
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

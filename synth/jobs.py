"""One shard as an independent task: make it, check a finished one, and finalize the category (manifest, report).

Shard k holds samples [k*S, (k+1)*S): `make_shard(job, k)` reads sources.h5, runs synth.pipeline.synthesize for
its samples and writes shard k atomically, so any worker, backend (loky, dask) or machine (`--shards A-B`) makes
the same bytes. Each finished shard gets a sidecar `.build/shard-NNNNN.h5.json` (sha256, size, counts, the build
key); a rerun keeps shards whose sidecar and checksum verify and remakes the rest. `finalize` writes the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synth.console import progress
from synth.errors import LogicalError, ShardError
from synth.pipeline import SynthConfig, synthesize
from synth.render.server import RemoteRenderer
from synth.sources import BUILD_DIR, RENDER_BATCH, open_store
from synth.store.atomic import check_space, h5_writer_state, sha256_file
from synth.store.manifest import write_manifest
from synth.store.schema import KINDS, SHARD_PATTERN, SOURCES, shard_name
from synth.store.shards import ShardWriter

BACKENDS = ("loky", "dask")


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
        from synth.render.loader import load_generator

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

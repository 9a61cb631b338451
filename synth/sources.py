"""Stage *prepare* of a build: per-source features computed once into `sources.h5`, and its reader.

`prepare` turns a category's normal images into `sources.h5` (image, JND, edges, foreground, regions and the
generator's render G(E_j) per source; a process pool over sources) and reuses the file while its key (the
settings, the renderer and the source files) matches and its sha256 still equals the one recorded in
`.build/sources.h5.json` when it was written; a file changed since (or locked by a writer) is remade, and the
reason is reported. `open_store` hands shard tasks a cached reader over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from synth.console import progress, say
from synth.errors import DatasetError, ImageError
from synth.pipeline import SourceFeatures, prepare_source, quantise_edge
from synth.store.atomic import check_space, h5_writer_state, sha256_file
from synth.store.schema import JND_SCALE, SOURCES
from synth.store.shards import write_sources

BUILD_DIR = ".build"       # a build's sidecars: checksums recorded at write time, per-shard stats, timings

RENDER_BATCH = 16          # images rendered (and samples planned, rendered and composed) together


def content_key(obj) -> str:
    """Short sha256 of a JSON-able object: the key under which a prepared or built file is reused."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made or found: sources.h5, its source count, the unreadable images left out, the
    seconds spent (None when an existing file was reused), its sha256 and size (recorded at write time,
    verified on reuse) and why an existing file was not reused (None: reused or there was none)."""

    path: Path
    sources: int
    skipped: list[str]
    seconds: float | None
    sha256: str = ""
    size: int = 0
    remade: str | None = None


_EXTRACTORS: dict = {}


def _extractor(name: str, weights: str | None):
    """One edge extractor per process (PiDiNet loads its weights once)."""
    from synth.features.edges import get_extractor

    key = (name, weights)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = get_extractor(name, Path(weights) if weights else None)
    return _EXTRACTORS[key]


def _prepare_one(path: str, size: int, edges: str, weights: str | None, bits: int | None = None,
                 labels: str | None = None):
    """Features of one source, or the ImageError's message (collected and reported by the caller)."""
    try:
        f = prepare_source(Path(path), size, _extractor(edges, weights), bits=bits,
                           labels=Path(labels) if labels else None)
    except ImageError as exc:
        return str(exc)
    jnd_u8 = np.clip(np.rint(f.jnd * JND_SCALE), 0, 255).astype(np.uint8)
    return f.image, jnd_u8, quantise_edge(f.edge), f.foreground.astype(np.uint8), f.regions


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def sidecar_path(target: Path) -> Path:
    """`<dir>/.build/<name>.json`: the checksum, size and key recorded when a build wrote `target`."""
    return target.parent / BUILD_DIR / f"{target.name}.json"


def _record(target: Path, key: str) -> tuple[str, int]:
    """Hash the file just written and record it in its sidecar (atomically); (sha256, size)."""
    sha, size = sha256_file(target), target.stat().st_size
    side = sidecar_path(target)
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "sha256": sha, "size": size}, indent=2) + "\n")
    os.replace(tmp, side)
    return sha, size


def _reusable(target: Path, key: str) -> tuple[Prepared | None, str | None]:
    """(the existing sources.h5, None) when it verifies against what the build recorded at write time and
    was made with this key; else (None, why it is not reused), or (None, None) when there is none."""
    if not target.is_file():
        return None, None
    try:
        side = json.loads(sidecar_path(target).read_text())
    except (OSError, ValueError):
        side = None
    if not isinstance(side, dict):
        return None, f"no checksum recorded for it ({sidecar_path(target)} is missing)"
    if side.get("key") != key:
        return None, "it was made with other settings or inputs"
    locked = h5_writer_state(target)
    if locked:
        return None, locked
    size = target.stat().st_size
    sha = sha256_file(target) if size == side.get("size") else None
    if sha != side.get("sha256"):
        return None, "it changed after the build wrote it (sha256 differs from the one recorded at write time)"
    try:
        with h5py.File(target, "r") as f:
            return Prepared(target, int(f["image"].shape[0]), json.loads(f.attrs["skipped"]), None, sha,
                            size), None
    except (OSError, KeyError, ValueError) as exc:
        return None, f"unreadable ({exc})"


def prepare(paths: list[Path], root: Path, directory: Path, size: int, edges: str, weights: str | None,
            renderer, attrs: dict, workers: int, skip_bad: bool, labels: list[Path] | None = None) -> Prepared:
    """Make (or reuse) `<directory>/sources.h5` from the normal images `paths` (named relative to `root`);
    `labels` (one part label image per path, synth.datasets.part_labels) replace the classical regions."""
    from joblib import Parallel, delayed

    from synth.datasets.part_labels import labels_key

    target = directory / SOURCES
    key = content_key({**attrs, "renderer": getattr(renderer, "identity", "none"),
                       "files": [(_name(p, root), p.stat().st_size if p.exists() else -1) for p in paths],
                       **({"labels": labels_key(labels)} if labels else {})})
    reused, why = _reusable(target, key)
    if reused is not None:
        say(f"{attrs['category']}: reusing {target} ({reused.sources} sources; checksum verified)")
        return reused
    if why:
        say(f"{attrs['category']}: remaking {target}: {why}")
    t0 = time.perf_counter()
    jobs = (delayed(_prepare_one)(str(p), size, edges, weights, attrs.get("bits") or None, str(lab) if lab else None)
            for p, lab in zip(paths, labels or [None] * len(paths), strict=True))
    results = list(progress(Parallel(n_jobs=workers, return_as="generator")(jobs),
                            desc=f"{attrs['category']}: prepare sources", total=len(paths)))
    bad = [(p, r) for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    if bad and not skip_bad:
        raise ImageError(f"{bad[0][1]}\n(use --skip-bad to leave unreadable images out; "
                         f"{len(bad)} unreadable in {attrs['category']})")
    good = [(p, r) for p, r in zip(paths, results, strict=True) if not isinstance(r, str)]
    if len(good) < 2:
        raise DatasetError(f"{root}: category {attrs['category']!r} has {len(good)} usable normal image(s); "
                           "at least 2 are needed (another image's edges are part of every edit)")
    image, jnd, edge, fg, regions = (np.stack(a) for a in zip(*(r for _, r in good), strict=True))
    render = _render(renderer, edge, image, attrs["category"])
    skipped = [str(p) for p, _ in bad]
    check_space(directory, SOURCES, image.size * 11 // 3)
    sidecar_path(target).unlink(missing_ok=True)      # recorded again once the new file is complete
    write_sources(target, image, jnd, edge, fg, regions, render, [_name(p, root) for p, _ in good],
                  {**attrs, "key": key, "skipped": json.dumps(skipped),
                   "renderer": getattr(renderer, "identity", "none")})
    sha, nbytes = _record(target, key)
    return Prepared(target, len(good), skipped, time.perf_counter() - t0, sha, nbytes, why)


def _render(renderer, edge: np.ndarray, image: np.ndarray, category: str) -> np.ndarray:
    """G(E_j) for every source in batches (zeros without a renderer, e.g. the Perlin baseline, and for an
    inpainting generator, whose R_N depends on each sample's hole and is rendered with it)."""
    render = np.zeros_like(image)
    if renderer is not None and getattr(renderer, "kind", "global") == "global":
        for s in progress(range(0, len(image), RENDER_BATCH), desc=f"{category}: render sources",
                          total=-(-len(image) // RENDER_BATCH)):
            sl = slice(s, s + RENDER_BATCH)
            render[sl] = renderer.render(edge[sl].astype(np.float32) / 255.0, image[sl])
    return render


class SourceStore:
    """sources.h5 as `Sources` for the pipeline: rows read on demand, the last `keep` kept (LRU, ~0.85 MB
    each at 256 px); the JND map is not read (synthesis does not use it)."""

    def __init__(self, path: Path, keep: int = 256):
        self.path, self.keep = Path(path), keep
        self._file = h5py.File(self.path, "r")
        self._n = int(self._file["image"].shape[0])
        self._cache: OrderedDict[int, SourceFeatures] = OrderedDict()

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> SourceFeatures:
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        f = self._file
        hit = SourceFeatures(f["image"][i], None, f["edge"][i].astype(np.float32) / 255.0,
                             f["foreground"][i] > 0, f["regions"][i], f["render"][i])
        self._cache[i] = hit
        if len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return hit

    def name(self, i: int) -> str:
        """The image file source `i` was prepared from (as recorded in sources.h5)."""
        value = self._file["path"][i]
        return value.decode() if isinstance(value, bytes) else str(value)

    def close(self) -> None:
        self._file.close()
        self._cache.clear()


_STORES: dict[tuple, SourceStore] = {}


def open_store(path: Path) -> SourceStore:
    """The reader of sources.h5 at `path`: one open per process and file version, shared by shard tasks."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _STORES:
        close_stores()
        _STORES[key] = SourceStore(path)
    return _STORES[key]


def close_stores() -> None:
    """Close the sources.h5 readers this process holds (in-process runs: before the build returns)."""
    for store in _STORES.values():
        store.close()
    _STORES.clear()

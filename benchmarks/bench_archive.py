"""Throughput of pack / verify / unpack on a synthetic generated dataset of a few hundred MB.

    .venv/bin/python benchmarks/bench_archive.py [--mb 300] [--size 256]

Builds the dataset with the real writers in a temp dir (noisy image content, so compression cannot shrink it to
nothing), then times `pack`, `verify` of the directory and of the tar, and unpacking into the cache.
Files were just written, so they sit in the page cache: the figures are CPU (sha256) bound, not disk bound.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from synth.store.archive import open_dataset_path, pack_dataset, verify_path
from synth.store.manifest import write_manifest
from synth.store.schema import SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources

STRATEGIES = ["add_part", "remove_part", "tps_warp"]


def noisy_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Blocky colour fields plus +-16 noise: image-like and only mildly compressible."""
    base = rng.integers(0, 224, (n, size // 16, size // 16, 3), dtype=np.uint8)
    base = base.repeat(16, axis=1).repeat(16, axis=2)
    return base + rng.integers(0, 32, base.shape, dtype=np.uint8)


def build(directory: Path, mb: float, size: int, shard_size: int = 256, sources: int = 32) -> int:
    rng = np.random.default_rng(0)
    image = noisy_images(rng, sources, size)
    plane = np.zeros((sources, size, size), np.uint8)
    write_sources(directory / SOURCES, image, plane, plane, plane, plane.astype(np.uint16), image,
                  [f"{i:03d}.png" for i in range(sources)],
                  {"size": size, "dataset": "bench", "category": "noise"})
    n = max(1, int(mb * 1e6 / (size * size * 3)))
    for k in range((n + shard_size - 1) // shard_size):
        count = min(shard_size, n - k * shard_size)
        anomalies = noisy_images(rng, count, size)
        with ShardWriter(directory / shard_name(k), k * shard_size, shard_size, size, size, STRATEGIES) as w:
            for j in range(count):
                mask = np.zeros((size, size), bool)
                mask[size // 4: size // 2, size // 4: size // 2] = True
                w.append(anomalies[j], mask, j % sources, j % 2, j % 3, k * shard_size + j,
                         (size // 4, size // 4, size // 2, size // 2))
    write_manifest(directory, {"dataset": "bench", "category": "noise", "licence": "none", "config": {},
                               "seed": 0, "n": n, "shard_size": shard_size, "counts": {"samples": n}})
    return n


def timed(label: str, nbytes: int, fn) -> None:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    problems = getattr(result, "problems", [])
    assert not problems, problems
    print(f"{label:<22} {nbytes / 1e6:8.1f} MB in {seconds:6.2f} s  = {nbytes / 1e6 / seconds:7.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=300, help="approximate dataset size in MB")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_archive-") as tmp:
        root = Path(tmp)
        directory = root / "bench" / "noise"
        directory.mkdir(parents=True)
        start = time.perf_counter()
        n = build(directory, args.mb, args.size)
        nbytes = sum(p.stat().st_size for p in directory.iterdir())
        print(f"built {n} samples ({args.size}px), {nbytes / 1e6:.1f} MB on disk, "
              f"{time.perf_counter() - start:.1f} s; cpus: {os.cpu_count()}")
        tar = root / "bench.tar"
        timed("pack", nbytes, lambda: pack_dataset(directory, tar))
        timed("verify directory", nbytes, lambda: verify_path(directory))
        timed("verify tar", nbytes, lambda: verify_path(tar))
        timed("unpack tar to cache", nbytes, lambda: open_dataset_path(tar, cache_dir=root / "cache"))
        timed("reuse cached unpack", nbytes, lambda: open_dataset_path(tar, cache_dir=root / "cache"))


if __name__ == "__main__":
    main()

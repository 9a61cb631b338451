"""Peak memory and throughput of `export --format hf` as the sample count grows: the export streams, so peak RSS
should stay flat in n.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_export.py [--n 1000 4000 16000] [--size 64]

For each n, builds a generated dataset with the real writers in a temp dir (blocky colour fields plus noise,
like bench_archive.py; 32 sources, shards of 1000), then exports it in a child process that reports its own
peak RSS (getrusage ru_maxrss) and wall time. A child that only imports the same modules gives the baseline.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synth.store.manifest import write_manifest
from synth.store.schema import SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources

STRATEGIES = ["add_part", "remove_part", "tps_warp"]
CHILD = """
import json, resource, sys, time
from pathlib import Path
import pyarrow.parquet, h5py, cv2
from synth.store.export_hf import export_hf
start = time.perf_counter()
if sys.argv[1] != "-":
    export_hf(Path(sys.argv[1]), Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def noisy_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Blocky colour fields plus +-16 noise: image-like and only mildly compressible."""
    base = rng.integers(0, 224, (n, max(1, size // 16), max(1, size // 16), 3), dtype=np.uint8)
    base = base.repeat(16, axis=1).repeat(16, axis=2)[:, :size, :size]
    return base + rng.integers(0, 32, base.shape, dtype=np.uint8)


def build(directory: Path, n: int, size: int, shard_size: int = 1000, sources: int = 32) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    image = noisy_images(rng, sources, size)
    plane = np.zeros((sources, size, size), np.uint8)
    write_sources(directory / SOURCES, image, plane, plane, plane, plane.astype(np.uint16), image,
                  [f"{i:03d}.png" for i in range(sources)], {"size": size, "dataset": "bench", "category": "noise"})
    for k in range((n + shard_size - 1) // shard_size):
        count = min(shard_size, n - k * shard_size)
        anomalies = noisy_images(rng, count, size)
        with ShardWriter(directory / shard_name(k), k * shard_size, count, size, size, STRATEGIES) as w:
            for j in range(count):
                mask = np.zeros((size, size), bool)
                mask[size // 4: size // 2, size // 4: size // 2] = True
                w.append(anomalies[j], mask, j % sources, j % 2, j % 3, k * shard_size + j,
                         (size // 4, size // 4, size // 2, size // 2))
    counts = {"samples": n, "by_kind": {"logical": (n + 1) // 2, "structural": n // 2}}
    write_manifest(directory, {"dataset": "bench", "category": "noise", "licence": "none", "config": {},
                               "seed": 0, "n": n, "shard_size": shard_size, "counts": counts})


def child(*args: str) -> dict:
    env = {**os.environ, "LOGICAL_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000, 16000], help="sample counts")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    args = parser.parse_args()
    base = child("-")
    print(f"imports only: peak RSS {base['peak_rss_mb']:.0f} MB; size {args.size}px; cpus {os.cpu_count()}")
    print(f"{'n':>8} {'build s':>8} {'export s':>9} {'samples/s':>10} {'parquet MB':>11} {'peak RSS MB':>12}")
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix="bench_export-") as tmp:
            directory, out = Path(tmp) / "bench" / "noise", Path(tmp) / "hf"
            start = time.perf_counter()
            build(directory, n, args.size)
            built = time.perf_counter() - start
            got = child(str(directory), str(out))
            mb = sum(p.stat().st_size for p in (out / "data").iterdir()) / 1e6
            print(f"{n:>8} {built:>8.1f} {got['seconds']:>9.1f} {n / got['seconds']:>10.0f} {mb:>11.1f} "
                  f"{got['peak_rss_mb']:>12.0f}", flush=True)


if __name__ == "__main__":
    main()

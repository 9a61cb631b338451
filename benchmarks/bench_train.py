"""Training speed: loader samples/s (1 and 2 workers) and steps/s of the `small` and `base` networks.

Run: .venv/bin/python benchmarks/bench_train.py [--n 400] [--size 256] [--batch-size 8] [--arch paper,attention]
     .venv/bin/python benchmarks/bench_train.py --steps-only --size 128 --arch paper,attention,bottleneck
Makes a temporary generated dataset of random-ish pictures with the shards writer, then prints one line per
figure. Goal: >= 500 samples/s per loader worker at 256x256 without a GPU.
"""

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import median_seconds
from torch.utils.data import DataLoader

from synth.store.manifest import write_manifest
from synth.store.schema import SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources
from train.data import ShardDataset, to_float
from train.losses import total_loss
from train.model import LocalizationNet, count_parameters, make_config


def smooth_picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photo-like uint8 RGB image: blurred blobs plus mild noise (compresses like real data)."""
    img = np.full((size, size, 3), rng.integers(60, 200, 3), np.uint8)
    for _ in range(12):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, centre, int(rng.integers(4, size // 4)), c, -1)
    img = cv2.GaussianBlur(img, (0, 0), 2)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def make_dataset(directory: Path, n: int, size: int, sources: int = 16, shard_size: int = 100,
                 seed: int = 0) -> Path:
    """A generated dataset of `n` random-ish samples, written with synth.store.shards."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    images = np.stack([smooth_picture(rng, size) for _ in range(sources)])
    gray = images.mean(axis=3).astype(np.float32)
    edge = np.stack([cv2.Canny(g.astype(np.uint8), 30, 90) for g in gray])
    jnd = np.clip(rng.normal(40, 10, gray.shape), 0, 255).astype(np.uint8)
    ones = np.ones(gray.shape, np.uint8)
    attrs = {"size": size, "dataset": "folder", "category": "bench"}
    write_sources(directory / SOURCES, images, jnd, edge, ones, ones.astype(np.uint16), images,
                  [f"{i}.png" for i in range(sources)], attrs)
    for k in range((n + shard_size - 1) // shard_size):
        with ShardWriter(directory / shard_name(k), k * shard_size, shard_size, size, size, ["bench"]) as w:
            for _ in range(k * shard_size, min(n, (k + 1) * shard_size)):
                s = int(rng.integers(sources))
                anomaly = images[s].copy()
                mask = np.zeros((size, size), np.uint8)
                x, y = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
                cv2.circle(mask, (x, y), size // 10, 1, -1)
                anomaly[mask > 0] = smooth_picture(rng, size)[mask > 0]
                w.append(anomaly, mask, s, 0, 0, 0, (x, y, x + 1, y + 1))
    write_manifest(directory, {"dataset": "folder", "category": "bench", "licence": "none", "config": {},
                               "seed": seed, "n": n, "shard_size": shard_size, "counts": {"samples": n}})
    return directory


def bench_loader(directory: Path, size: int, workers: int, batch_size: int, normal_fraction: float) -> float:
    """Samples/s through a DataLoader as training uses it (persistent workers, uint8 items, float on the
    consumer side): one warm-up epoch (worker start, page cache, source cache), then one timed epoch."""
    ds = ShardDataset(directory, size, normal_fraction=normal_fraction, verify=False)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    for _ in loader:
        pass
    t = time.perf_counter()
    count = sum(to_float(batch)["image"].shape[0] for batch in loader)
    return count / (time.perf_counter() - t)


def bench_items(directory: Path, size: int, normal_fraction: float) -> float:
    """Items/s of one process reading in random order, by CPU time (robust on a shared machine)."""
    ds = ShardDataset(directory, size, normal_fraction=normal_fraction, verify=False)
    order = np.random.default_rng(0).permutation(len(ds))
    for i in order:  # warm the source cache and page cache
        ds[int(i)]
    t = time.process_time()
    for i in order:
        to_float({k: v[None] for k, v in ds[int(i)].items()})
    return len(order) / (time.process_time() - t)


def bench_steps(preset: str, size: int, batch_size: int, steps: int, device: str, arch: str = "paper",
                cpu_clock: bool = False) -> float:
    """Seconds per training step (forward, losses, backward, Adam): median of `steps` after one warm-up;
    `cpu_clock`: this process's CPU seconds instead of wall clock (steadier on a shared CPU, one thread)."""
    torch.manual_seed(0)
    model = LocalizationNet(make_config(preset, size, arch)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    cuda = device == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(batch_size, 3, size, size, generator=g),
             "mask": (torch.rand(batch_size, 1, size, size, generator=g) > 0.9).float(),
             "jnd": torch.rand(batch_size, 1, size, size, generator=g) * 0.5,
             "edge": (torch.rand(batch_size, 1, size, size, generator=g) > 0.9).float()}
    batch["normal"] = batch["image"]
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(batch["image"])
        loss = total_loss(out, batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if not cpu_clock:
        return median_seconds(step, device, steps)[0]
    step()
    runs = []
    for _ in range(max(1, steps)):
        start = time.process_time()
        step()
        runs.append(time.process_time() - start)
    return float(np.median(runs))


def forward_gflops(preset: str, size: int, arch: str) -> float:
    """GFLOPs of one forward pass of one image, counted on the meta device (no compute; machine-independent)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = LocalizationNet(make_config(preset, size, arch))
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def step_times(archs: list[str], preset: str, size: int, batch_size: int, steps: int, threads: int,
               cpu_clock: bool = False) -> None:
    """One CPU line per arch: ms per step, forward GFLOPs and, for a global arch, both as a ratio to the
    paper's (issue 24: <= 1.5x)."""
    paper = None
    clock = "CPU" if cpu_clock else "wall"
    for arch in archs:
        params = count_parameters(LocalizationNet(make_config(preset, size, arch))) / 1e6
        flops = forward_gflops(preset, size, arch)
        sec = bench_steps(preset, size, batch_size, steps, "cpu", arch, cpu_clock)
        paper = (sec, flops) if arch == "paper" else paper
        ratio = (f", {sec / paper[0]:.2f}x paper's time, {flops / paper[1]:.2f}x its FLOPs"
                 if paper and arch != "paper" else "")
        print(f"cpu     {preset:5s} {arch:10s} {size}px batch {batch_size} ({params:.2f} M params, {flops:.3f} "
              f"GFLOP fwd/image, {threads} thread): {sec * 1000:8.0f} ms/step ({clock}){ratio}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="samples in the temporary dataset")
    ap.add_argument("--size", type=int, default=256, help="image size")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for the step timings")
    ap.add_argument("--arch", default="paper", help="comma-separated networks to time (train.model.ARCHS)")
    ap.add_argument("--steps-only", action="store_true", help="only the step timings (no dataset, no loader)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per figure (small preset)")
    ap.add_argument("--cpu-clock", action="store_true", help="time steps by CPU seconds, not wall clock")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if args.steps_only:
        step_times(archs, "small", args.size, args.batch_size, args.repeats, args.threads, args.cpu_clock)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        directory = make_dataset(Path(tmp) / "ds", args.n, args.size)
        print(f"dataset: {args.n} samples at {args.size}px written in {time.perf_counter() - t:.1f} s")
        for nf in (0.5, 0.0):
            rate = bench_items(directory, args.size, nf)
            print(f"reader  normal-fraction {nf}: {rate:7.0f} samples/s, 1 process (CPU time), {args.size}px")
        for workers in (1, 2):
            rate = bench_loader(directory, args.size, workers, args.batch_size, 0.5)
            print(f"loader  workers={workers} normal-fraction 0.5: {rate:7.0f} samples/s "
                  f"({rate / workers:.0f} per worker, wall clock) at {args.size}px")
    for preset, steps in (("small", args.repeats), ("base", 1)):
        step_times(archs, preset, args.size, args.batch_size, steps, args.threads, args.cpu_clock)
    small = make_config("small")
    sec = bench_steps("small", small.size, args.batch_size, 5, "cpu")
    print(f"cpu     small {small.size}px (its own size) batch {args.batch_size}: {sec * 1000:8.0f} ms/step, "
          f"{1 / sec:6.2f} steps/s")
    if not torch.cuda.is_available():
        print("cuda    no GPU")
        return
    for preset in ("small", "base"):
        sec = bench_steps(preset, args.size, args.batch_size, 20, "cuda")
        print(f"cuda    {preset:5s} {args.size}px batch {args.batch_size} bf16: {sec * 1000:8.1f} ms/step, "
              f"{args.batch_size / sec:7.0f} samples/s")


if __name__ == "__main__":
    main()

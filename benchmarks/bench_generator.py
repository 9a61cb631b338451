"""Generator speed: inference images/s and training steps/s per preset, on CPU and (bf16) on CUDA if present.

Each figure is the median of --repeats timed runs after one warm-up (benchmarks/timing.py).

    .venv/bin/python benchmarks/bench_generator.py [--presets tiny,base] [--tiny-batch 8]
        [--tiny-train-batch 4] [--base-batch 2] [--base-train-batch 1] [--repeats 3] [--threads N]
"""

import argparse

import numpy as np
import torch
from timing import median_seconds

from synth.render.generator import PRESETS, GeneratorRenderer, GlobalGenerator, MultiscaleDiscriminator, init_weights
from synth.render.training import train_step


def training_rate(gen: GlobalGenerator, disc: MultiscaleDiscriminator, edges: np.ndarray, batch: int,
                  device: torch.device, repeats: int) -> tuple[float, dict[str, float]]:
    """Steps/s of synth.render.training.train_step (G then D update, bf16 autocast and channels_last on CUDA)
    at `batch` copies of edges[0] and random targets, median of `repeats` after one warm-up; and the last
    step's losses. Moves `gen` and `disc` to `device` in training mode."""
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    gen, disc = gen.train().to(device, memory_format=memory), disc.to(device, memory_format=memory)
    opt_g = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
    size = edges.shape[-1]
    e = torch.from_numpy(edges[:1]).repeat(batch, 1, 1)[:, None].to(device).contiguous(memory_format=memory)
    real = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory)
    losses: dict[str, float] = {}

    def step() -> None:
        losses.update(train_step(gen, disc, opt_g, opt_d, e, real))

    seconds, _ = median_seconds(step, device, repeats)
    return 1.0 / seconds, losses


def bench(preset: str, device: torch.device, infer_batch: int, train_batch: int, repeats: int) -> str:
    """One line: parameters, inference images/s (B=infer_batch) and training steps/s (B=train_batch)."""
    config = PRESETS[preset]
    torch.manual_seed(0)
    gen, disc = GlobalGenerator(config), MultiscaleDiscriminator(config)
    init_weights(gen)
    init_weights(disc)
    rng = np.random.default_rng(0)
    edges = (rng.random((infer_batch, config.size, config.size)) > 0.9).astype(np.float32)
    renderer = GeneratorRenderer(gen, config, "bench", device=device, max_batch=infer_batch)
    seconds, _ = median_seconds(lambda: renderer.render(edges), device, repeats)
    images_per_s = infer_batch / seconds
    steps_per_s, _ = training_rate(gen, disc, edges, train_batch, device, repeats)
    params = sum(p.numel() for p in GlobalGenerator(config).parameters()) / 1e6
    kind = "cuda bf16" if device.type == "cuda" else f"cpu fp32 ({torch.get_num_threads()} threads)"
    return (f"{preset:5s} {config.size}px G {params:6.2f}M  {kind}: inference {images_per_s:8.2f} images/s "
            f"(batch {infer_batch}), training {steps_per_s:7.3f} steps/s = {steps_per_s * train_batch:7.2f} "
            f"images/s (batch {train_batch})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,base", help="comma-separated presets")
    parser.add_argument("--tiny-batch", type=int, default=8, help="tiny inference batch")
    parser.add_argument("--tiny-train-batch", type=int, default=4, help="tiny training batch")
    parser.add_argument("--base-batch", type=int, default=2, help="base inference batch")
    parser.add_argument("--base-train-batch", type=int, default=1, help="base training batch")
    parser.add_argument("--cuda-scale", type=int, default=8, help="batch multiplier on CUDA")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = {"tiny": (args.tiny_batch, args.tiny_train_batch),
               "base": (args.base_batch, args.base_train_batch)}
    presets = [p for p in args.presets.split(",") if p]
    for preset in presets:
        print(bench(preset, torch.device("cpu"), *batches[preset], args.repeats), flush=True)
    if not torch.cuda.is_available():
        print("no GPU: CUDA (bf16) numbers skipped")
        return
    torch.backends.cudnn.benchmark = True
    for preset in presets:
        infer, train = batches[preset]
        scale = args.cuda_scale
        print(bench(preset, torch.device("cuda"), infer * scale, train * scale, args.repeats), flush=True)


if __name__ == "__main__":
    main()

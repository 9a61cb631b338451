"""The measurements of benchmarks/gpu_check.py, one function per step; each returns (figures, summary line)
and raises StepFailed (or anything else) when its own checks fail.

In-process: environment, generator fitting speed, render throughput. Subprocesses (what a user runs, each
with a timeout and its output in a log file): build, verify, train, torchrun, eval.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds, sync

from synth.edit.strategies import PAINTED

RENDERED = ("remove", "replace", "merge", "jitter", "warp")

REPO = Path(__file__).resolve().parents[1]


class StepFailed(Exception):
    """A step's own check failed; the message says which and with what value."""


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: FULL for one H200 in ~8 minutes, SMOKE for a 2-core CPU in about a minute."""

    device: str
    size: int
    gen_preset: str
    train_preset: str
    render_batches: tuple[int, ...]
    warmup: int
    repeats: int
    matmul_n: int
    fit_epochs: int
    n: int
    inline_n: int
    shard_size: int
    workers: int
    train_steps: int
    train_batch: int
    loader_workers: int
    budget: float
    timeout: float           # cap of any one subprocess
    arch: str = "paper"      # logical-train --arch of the train and torchrun steps


FULL = Settings(device="cuda", size=256, gen_preset="base", train_preset="base", render_batches=(32, 64, 128),
                warmup=3, repeats=10, matmul_n=8192, fit_epochs=5, n=50000, inline_n=2000,
                shard_size=500, workers=16, train_steps=200, train_batch=8, loader_workers=4, budget=470,
                timeout=300)
SMOKE = Settings(device="cpu", size=64, gen_preset="tiny", train_preset="small", render_batches=(2, 4),
                 warmup=1, repeats=2, matmul_n=256, fit_epochs=1, n=24, inline_n=8, shard_size=8,
                 workers=2, train_steps=4, train_batch=2, loader_workers=1, budget=900, timeout=300)


def num(x: float) -> str:
    """3 significant digits, thousands separated: 12,345 / 123 / 1.23 / 0.0123."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{digits}f}"


def si(x: float, unit: str) -> str:
    """`x` with an SI prefix: 1.23 TFLOP/s, 456 GFLOP."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{num(x / scale)} {prefix}{unit}"
    return f"{num(x)} {unit}"


def finite(name: str, value: float, positive: bool = True) -> float:
    """`value` as a float, or StepFailed when it is NaN/inf (or not > 0 when `positive`)."""
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise StepFailed(f"{name} = {value}")
    return value


# ---------------------------------------------------------------- in-process steps

def environment(s: Settings) -> tuple[dict, str]:
    """Versions, the device and whether it does bf16."""
    import cv2
    import h5py

    try:
        import tqdm
        tqdm_version = tqdm.__version__
    except ImportError:
        tqdm_version = None
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "numpy": np.__version__, "h5py": h5py.__version__, "opencv": cv2.__version__, "tqdm": tqdm_version,
           "cpus": os.cpu_count(), "device": s.device}
    if s.device == "cuda":
        if not torch.cuda.is_available():
            raise StepFailed("no CUDA device (run with --smoke on a machine without one)")
        props = torch.cuda.get_device_properties(0)
        env |= {"device_name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported()}
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.ones(4, 4) @ torch.ones(4, 4)
        env |= {"device_name": platform.processor() or platform.machine(), "bf16": y.dtype == torch.bfloat16}
    if not env["bf16"]:
        raise StepFailed(f"{env['device_name']}: no bf16 support")
    return env, (f"{env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}, bf16 supported, "
                 f"{env['cpus']} CPUs, tqdm {tqdm_version or 'missing'}")


def fit(s: Settings, toybox: Path, out: Path) -> tuple[dict, str]:
    """fit-generator's training step on its own (steps/s, losses), then a short real fit on toybox whose
    checkpoint the build steps use (synth.render.fitting, as `logical-synth fit-generator` calls it)."""
    from bench_generator import training_rate

    from synth.render.fitting import fit_for_category
    from synth.render.generator import GlobalGenerator, MultiscaleDiscriminator, config_for, init_weights
    from synth.render.training import FIT_DEFAULTS

    dev = torch.device(s.device)
    config = config_for(s.gen_preset, s.size)
    batch = FIT_DEFAULTS[s.gen_preset]["batch_size"]   # fit-generator's own (base: 16)
    torch.manual_seed(0)
    gen, disc = GlobalGenerator(config), MultiscaleDiscriminator(config)
    init_weights(gen)
    init_weights(disc)
    edges = (np.random.default_rng(0).random((1, s.size, s.size)) > 0.9).astype(np.float32)
    steps_per_s, losses = training_rate(gen, disc, edges, batch, dev, s.repeats)
    del gen, disc
    for name, value in losses.items():
        finite(f"loss {name}", value, positive=False)
    t = time.perf_counter()
    path = fit_for_category("toybox", toybox, "tray", size=s.size, preset=s.gen_preset, epochs=s.fit_epochs,
                            out=out, device=s.device, progress=False)
    wall = time.perf_counter() - t
    quality = torch.load(path, map_location="cpu", weights_only=True)["quality"]
    finite("fitted generator SSIM", quality["ssim_mean"])
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    data = {"preset": s.gen_preset, "size": s.size, "batch": batch, "steps_per_s": steps_per_s,
            "images_per_s": steps_per_s * batch, "losses": losses, "fit_epochs": s.fit_epochs,
            "fit_seconds": wall, "ssim_mean": quality["ssim_mean"], "generator": str(path)}
    return data, (f"{num(steps_per_s)} steps/s = {num(steps_per_s * batch)} images/s (batch {batch}), "
                  f"losses finite; {s.fit_epochs}-epoch fit {wall:.0f} s, "
                  f"SSIM {quality['ssim_mean']:.3f}")


def _edge_maps(toybox: Path, size: int, count: int) -> np.ndarray:
    """`count` classic edge maps (float32 (count, size, size)) of toybox train images, repeated as needed."""
    from synth.datasets import open_dataset
    from synth.datasets.images import load_rgb, resize_rgb
    from synth.features.edges import get_extractor

    paths = open_dataset("toybox", toybox).train_images("tray")[:min(count, 32)]
    extractor = get_extractor("classic")
    maps = np.stack([extractor(resize_rgb(load_rgb(p), size)) for p in paths]).astype(np.float32)
    return np.resize(maps, (count, size, size))


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """PSNR (dB, peak 255, capped at 100 for identical images) and ||a - b|| / ||b|| of two uint8 batches."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return {"psnr_db": 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse)),
            "relative_error": float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)),
            "max_abs_diff": float(np.abs(a - b).max())}


def matmul_flop_per_s(n: int, device: torch.device, repeats: int, warmup: int) -> float:
    """FLOP/s of an (n x n) @ (n x n) bf16 matrix product: the device's practical bf16 ceiling."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds, _ = median_seconds(lambda: a @ b, device, repeats, warmup)
    return 2 * n**3 / seconds


def render(s: Settings, toybox: Path, generator: Path | None) -> tuple[dict, str]:
    """Render throughput of the generator as build runs it (GeneratorRenderer: numpy edges in, uint8 images
    out, bf16 autocast + channels_last on CUDA), per batch size; the device-only forward rate; FLOP per image
    (torch.utils.flop_counter) against a big bf16 matmul's rate; bf16 vs fp32 renders."""
    from torch.utils.flop_counter import FlopCounterMode

    from synth.render.generator import GeneratorRenderer, GlobalGenerator, config_for, init_weights
    from synth.render.loader import load_generator

    dev = torch.device(s.device)
    if generator is not None:
        fitted = load_generator(generator, device=s.device)
        model, config, weights = fitted.model, fitted.config, "fitted"
    else:
        config = config_for(s.gen_preset, s.size)
        torch.manual_seed(0)
        model, weights = GlobalGenerator(config), "random init (the fit step failed)"
        init_weights(model)
    edges = _edge_maps(toybox, config.size, max(s.render_batches))
    rates, renders = {}, None
    for batch in s.render_batches:
        renderer = GeneratorRenderer(model, config, "check", device=dev, max_batch=batch)
        seconds, runs = median_seconds(lambda r=renderer, b=batch: r.render(edges[:b]), dev, s.repeats,
                                       s.warmup)
        rates[batch] = {"images_per_s": batch / seconds, "median_s": seconds, "runs_s": runs}
    renders = renderer.render(edges)
    if float(renders.std()) < 1.0:
        raise StepFailed(f"renders are constant (std {renders.std():.3f} grey levels)")
    best = max(rates, key=lambda b: rates[b]["images_per_s"])
    model = renderer.model
    x = torch.rand(best, 1, config.size, config.size, device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward() -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=renderer.bf16):
            return model(x)

    compute_s, _ = median_seconds(forward, dev, s.repeats, s.warmup)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x[:1])
    flop = finite("FLOP per image", counter.get_total_flops())
    matmul_rate = matmul_flop_per_s(s.matmul_n, dev, s.repeats, s.warmup)
    k = min(16, len(edges))
    bf16 = GeneratorRenderer(model, config, "check", device=dev, max_batch=k, bf16=True).render(edges[:k])
    fp32 = GeneratorRenderer(model, config, "check", device=dev, max_batch=k, bf16=False).render(edges[:k])
    agreement = _agreement(bf16, fp32)
    tuned = None
    if dev.type == "cuda":  # what cuDNN autotuning would buy (build leaves it off: same kernels every run)
        torch.backends.cudnn.benchmark = True
        try:
            r = GeneratorRenderer(model, config, "check", device=dev, max_batch=best)
            seconds, _ = median_seconds(lambda: r.render(edges[:best]), dev, s.repeats, s.warmup)
            tuned = best / seconds
        finally:
            torch.backends.cudnn.benchmark = False
    top = rates[best]["images_per_s"]
    data = {"preset": s.gen_preset, "size": config.size, "weights": weights,
            "precision": "bf16" if renderer.bf16 else "fp32", "batches": {str(b): r for b, r in rates.items()},
            "best_batch": best, "images_per_s": top, "compute_images_per_s": best / compute_s,
            "cudnn_benchmark_images_per_s": tuned, "flop_per_image": flop, "matmul_n": s.matmul_n,
            "matmul_flop_per_s": matmul_rate, "matmul_fraction": top * flop / matmul_rate,
            "bf16_vs_fp32": agreement}
    sync(dev)
    return data, (f"{num(top)} images/s {data['precision']} (batch {best}; forward alone "
                  f"{num(best / compute_s)}); {si(flop, 'FLOP')}/image = {num(100 * top * flop / matmul_rate)}% "
                  f"of {si(matmul_rate, 'FLOP/s')} bf16 matmul; bf16 vs fp32 PSNR {agreement['psnr_db']:.1f} dB, "
                  f"rel. error {100 * agreement['relative_error']:.2f}%")


# ---------------------------------------------------------------- subprocess steps

def run_cli(args: list[str], log: Path, timeout: float, env: dict | None = None) -> float:
    """Run `python -m ARGS` in the repository (its own process group, output to `log`.out/.err); the wall
    seconds. StepFailed on a non-zero exit or past `timeout` (then the whole group is killed: a build's
    workers and render process too)."""
    if timeout < 5:
        raise StepFailed("no time left in the budget")
    cmd = [sys.executable, "-m", *map(str, args)]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{log}.cmd").write_text(shlex.join(cmd) + "\n")
    t = time.perf_counter()
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=full_env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # leftovers (loky workers, render process) or all of it
            except ProcessLookupError:
                pass
            proc.wait()
    wall = time.perf_counter() - t
    if rc is None:
        raise StepFailed(f"timed out after {timeout:.0f} s: {shlex.join(cmd[2:])}")
    if rc != 0:
        tail = Path(f"{log}.err").read_text()[-1500:].strip()
        raise StepFailed(f"exit {rc}: {shlex.join(cmd[2:])}\n{tail}")
    return wall


def _made_so_far(directory: Path) -> int:
    """Samples in the shards a build has finished (its .build sidecars), for a build that ran out of time."""
    total = 0
    for p in (directory / ".build").glob("shard-*.json"):
        try:
            total += int(json.loads(p.read_text())["count"])
        except (OSError, ValueError, KeyError):
            continue
    return total


def build(s: Settings, toybox: Path, generator: Path, out: Path, logs: Path, mode: str, n: int, workers: int,
          timeout: float) -> tuple[dict, str]:
    """`logical-synth build` with the fitted generator, then `verify`, within `timeout` seconds for both (the
    last 40 kept for verify); speed, render share (workers' time blocked on the generator) and how many
    samples really went through the generator. A failed check still reports the figures in its message."""
    directory = out / "toybox" / "tray"
    args = ["synth", "build", "--dataset", "toybox", "--root", toybox, "--category", "tray", "--n", n,
            "--size", s.size, "--out", out, "--device", s.device, "--render", mode, "--workers", workers,
            "--shard-size", s.shard_size, "--generator", generator,
            # only strategies the generator renders (painted stroke/chip/colour would measure the CPU instead)
            "--strategies", ",".join(RENDERED)]
    t = time.perf_counter()
    try:
        wall = run_cli(args, logs / f"build-{mode}", timeout - min(40.0, timeout / 2))
    except StepFailed as exc:
        made = _made_so_far(directory)
        raise StepFailed(f"{exc} ({made} of {n} samples made in {time.perf_counter() - t:.0f} s)") from None
    manifest = json.loads((directory / "manifest.json").read_text())
    report, counts = manifest["report"], manifest["counts"]
    cpu = report["shard_cpu_seconds"]
    samples = int(counts["samples"])
    strategies = counts["by_strategy"]
    # perlin and the painted strategies (colour, stroke, chip) never reach the generator
    rendered = samples - sum(int(strategies.get(s, 0)) for s in ("perlin", *PAINTED))
    share = float(cpu.get("render", 0.0)) / max(float(cpu["total"]), 1e-9)
    data = {"mode": mode, "n": n, "workers": workers, "wall_s": wall, "samples_per_s": n / wall,
            "generate_samples_per_s": report["samples_per_second"], "seconds": report["seconds"],
            "render_share": share, "shard_cpu_seconds": cpu, "rendered_samples": rendered,
            "fallback": int(counts["rejections"].get("fallback", 0)), "by_strategy": strategies,
            "rejections": counts["rejections"], "directory": str(directory)}
    summary = (f"{n:,} samples in {wall:.1f} s = {num(n / wall)} samples/s (generate stage "
               f"{num(report['samples_per_second'])}/s), render share {100 * share:.0f}%, {rendered:,} rendered, "
               f"{data['fallback']} fallback")
    try:
        if samples != n:
            raise StepFailed(f"{samples} samples in the manifest, {n} asked")
        if report["render"] != mode:
            raise StepFailed(f"the build rendered {report['render']}, not {mode}")
        if rendered < 0.5 * samples or share <= 0:
            raise StepFailed(f"only {rendered} of {samples} samples went through the generator "
                             f"(by strategy {strategies}, rejections {counts['rejections']})")
        data["verify_s"] = run_cli(["synth", "verify", directory], logs / f"verify-{mode}",
                                   timeout - (time.perf_counter() - t))
        data["verified"] = Path(logs / f"verify-{mode}.out").read_text().strip()
        if not data["verified"].startswith("OK:"):
            raise StepFailed(f"verify: {data['verified']}")
    except StepFailed as exc:
        raise StepFailed(f"{exc} [{summary}]") from None
    return data, f"{summary}; {data['verified']}"


def _log_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    if not lines:
        raise StepFailed(f"{run / 'log.jsonl'} is empty")
    for line in lines:
        finite(f"loss at step {line['step']}", line["loss"]["total"])
    return lines


def train(s: Settings, shards: Path, run: Path, logs: Path, timeout: float) -> tuple[dict, str]:
    """`logical-train` for a fixed number of steps: steady-state speed (log lines after the first),
    loader wait share, peak CUDA memory, finite losses."""
    args = ["train", "--shards", shards, "--out", run, "--preset", s.train_preset, "--size", s.size,
            "--arch", s.arch, "--device", s.device, "--steps", s.train_steps, "--batch-size", s.train_batch,
            "--workers", s.loader_workers, "--ckpt-every", s.train_steps]
    wall = run_cli(args, logs / "train", timeout)
    lines = _log_lines(run)
    steady = lines[1:] or lines
    rate = float(np.median([line["samples_per_s"] for line in steady]))
    wait = float(np.mean([line["loader_wait"] for line in steady]))
    peak = max((line.get("peak_memory_mb", 0.0) for line in lines), default=0.0)
    if not (run / "model.pt").is_file():
        raise StepFailed(f"{run / 'model.pt'} was not written")
    data = {"preset": s.train_preset, "arch": s.arch, "size": s.size, "steps": s.train_steps, "batch": s.train_batch,
            "loader_workers": s.loader_workers, "wall_s": wall, "images_per_s": finite("images/s", rate),
            "steps_per_s": rate / s.train_batch, "loader_wait_share": wait, "peak_memory_mb": peak or None,
            "final_loss": lines[-1]["loss"]["total"], "checkpoint": str(run / "model.pt")}
    memory = f", peak {peak / 1024:.1f} GiB" if peak else ""
    return data, (f"{num(rate / s.train_batch)} steps/s = {num(rate)} images/s (batch {s.train_batch}), loader wait "
                  f"{100 * wait:.1f}%{memory}, loss {data['final_loss']:.3f}")


def torchrun(s: Settings, shards: Path, run: Path, logs: Path, timeout: float) -> tuple[dict, str]:
    """One training step under `torchrun --nproc_per_node 1` (torch.distributed.run): the process group
    and DDP wrapper start (train.json says distributed) and the step's loss is finite."""
    args = ["torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "train", "--shards", shards,
            "--out", run, "--preset", s.train_preset, "--size", s.size, "--arch", s.arch, "--device", s.device,
            "--steps", 1,
            "--batch-size", s.train_batch, "--workers", s.loader_workers]
    env = {"GLOO_SOCKET_IFNAME": "lo"} if s.device == "cpu" else None
    wall = run_cli(args, logs / "torchrun", timeout, env)
    info = json.loads((run / "train.json").read_text())
    if not info.get("distributed"):
        raise StepFailed(f"{run / 'train.json'}: the run did not join a process group")
    loss = _log_lines(run)[-1]["loss"]["total"]
    backend = "nccl" if s.device == "cuda" else "gloo"
    return {"wall_s": wall, "world_size": info["world_size"], "backend": backend, "loss": loss}, \
        f"DDP ({backend}, world 1) started, 1 step in {wall:.0f} s wall, loss {loss:.3f}"


def evaluate(s: Settings, toybox: Path, checkpoint: Path, out: Path, logs: Path,
             timeout: float) -> tuple[dict, str]:
    """`logical-train eval` on the toybox test split: seconds per image (model inference, and wall)."""
    args = ["train", "eval", "--checkpoint", checkpoint, "--dataset", "toybox", "--root", toybox,
            "--category", "tray", "--out", out, "--device", s.device, "--heatmaps", 0]
    wall = run_cli(args, logs / "eval", timeout)
    result = json.loads((out / "metrics.json").read_text())
    images = len(result["images"])
    per_image = finite("inference seconds", result["seconds"]["inference"]) / images
    mean = result["metrics"].get("mean", {})
    data = {"images": images, "inference_s_per_image": per_image, "wall_s_per_image": wall / images,
            "seconds": result["seconds"], "metrics": result["metrics"]}
    auroc = mean.get("image_auroc")
    score = f", mean I-AUROC {100 * auroc:.1f}" if isinstance(auroc, float) else ""
    return data, (f"{images} images: {1000 * per_image:.1f} ms/image inference, {wall / images:.2f} s/image "
                  f"wall{score}")

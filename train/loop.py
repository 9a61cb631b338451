"""The training loop, top to bottom (in the manner of nanoGPT's train.py).

Adam (lr 1e-4 for the base preset as in DRAEM, 1e-3 for small), x0.2 at 80% and 90% of the steps; bf16
autocast + channels_last on CUDA, float32 on CPU; gradient clipping; an atomic checkpoint every
`ckpt_every` steps (`last.pt`: weights, optimizer, scheduler, step, RNG; `model.pt`: weights + config) and
`resume`; a JSON-lines log (losses, samples/s, the share of the time spent waiting for the loader, peak CUDA
memory) and a PNG of the loss curves. Under torchrun (RANK/WORLD_SIZE set, even with one process) it runs
DDP: NCCL on CUDA, gloo on CPU, each process reads its own part of every epoch (DistributedSampler) and only
rank 0 writes files.
"""

import bisect
import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from synth.console import progress, say
from synth.datasets.images import save_image
from synth.errors import CheckpointError, LogicalError, ShardError
from synth.lock import folder_lock
from train.balanced import training_data
from train.composition import fit_on_shards
from train.data import to_float
from train.losses import total_loss
from train.model import (
    LocalizationNet,
    ModelConfig,
    check_trainable,
    make_config,
    read_checkpoint,
    save_checkpoint,
)

DEFAULT_STEPS = 20000
LR_GAMMA = 0.2
# Adam learning rate per preset: base follows DRAEM (1e-4 over ~700 epochs); small is for short CPU runs,
# where 1e-4 leaves it far from converged (BENCHMARKS.md: toybox, 500 steps, Perlin-trained mean AU-sPRO
# 47.8 over 3 seeds at 1e-4, 64.1 at 1e-3).
LEARNING_RATES = {"base": 1e-4, "small": 1e-3}
LR_MILESTONES = (0.8, 0.9)
COLOURS = [(0, 0, 0), (31, 119, 180), (44, 160, 44), (255, 127, 14), (214, 39, 40), (148, 103, 189)]  # per curve


@dataclass
class TrainConfig:
    """Every setting of a run; `logical-train` fills it from its options."""

    shards: Path | list[Path]  # one generated dataset (directory or .tar), or several: one unified model
    out: Path = Path("runs/model")
    steps: int | None = None  # total optimizer steps; wins over epochs
    epochs: int | None = None  # otherwise epochs x steps per epoch; neither: DEFAULT_STEPS
    batch_size: int = 8  # per process
    lr: float | None = None  # None: the preset's (LEARNING_RATES)
    device: str = "auto"  # auto | cpu | cuda
    preset: str = "base"
    size: int | None = None  # None: the preset's size
    arch: str = "paper"  # the network (train.model.ARCHS)
    workers: int = 4
    normal_fraction: float = 0.5
    seed: int = 0
    resume: bool = False
    flips: bool = False
    jitter: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    ckpt_every: int = 1000
    stop_at: int | None = None  # stop (with a checkpoint) after this step, e.g. for time-limited jobs
    verify: bool = True
    cache_dir: Path | None = None  # where archives unpack


class SkipSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) from a DistributedSampler's order for `epoch`, skipping the first `skip`:
    resume continues mid-epoch exactly, and persistent workers learn the epoch from each index."""

    def __init__(self, base: DistributedSampler, epoch: int, skip: int):
        self.base, self.epoch, self.skip = base, epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.base.set_epoch(self.epoch)
        for k, index in enumerate(self.base):
            if k >= self.skip:
                yield self.epoch, index

    def __len__(self) -> int:
        return len(self.base) - self.skip


def setup_distributed(device: str = "auto") -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started under torchrun (which sets
    RANK and MASTER_ADDR), also with a single process, so `torchrun --nproc_per_node 1` runs the DDP path.
    The backend follows where the run trains (`device` as in pick_device): NCCL for CUDA, gloo for the CPU,
    also on a machine that has a GPU (NCCL cannot reduce CPU tensors)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not ("RANK" in os.environ and "MASTER_ADDR" in os.environ):
        return 0, 1, 0
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if pick_device(device, local).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return rank, world, local


def pick_device(name: str, local_rank: int) -> torch.device:
    """auto -> CUDA when present; `cuda` without a GPU is a user error."""
    if name not in ("auto", "cpu", "cuda"):
        raise LogicalError(f"--device {name}: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise LogicalError("--device cuda: no CUDA device is available (use --device cpu)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def milestones(total: int) -> list[int]:
    return [int(f * total) for f in LR_MILESTONES]


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def check_same_config(path: Path, payload: dict, config: ModelConfig) -> None:
    """CheckpointError when the checkpoint `payload` read from `path` was made for another network than
    `config` (another --preset/--size/--arch): a run folder holds one model."""
    if payload["config"] != config.to_dict():
        raise CheckpointError(f"{path}: made for {payload['config']}, this run is {config.to_dict()}; "
                              "use the same --preset/--size/--arch or another --out")


def restore(path: Path, model: LocalizationNet, config: ModelConfig, opt, sched, device) -> int:
    """Load a `last.pt` into model, optimizer, scheduler and RNG; returns the step to continue from."""
    payload = read_checkpoint(path)
    check_same_config(path, payload, config)
    try:
        model.load_state_dict(payload["state_dict"])
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"]["torch"])
        if device.type == "cuda" and "cuda" in payload["rng"]:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], device)
        return int(payload["step"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot resume from it ({type(exc).__name__}: {exc})") from None


# One function on purpose (~130 lines): the plain PyTorch loop (AMP, DDP, resume, periodic checkpoints, the
# non-finite stop) reads top to bottom in one place; its state would otherwise travel through every signature.
def fit(cfg: TrainConfig) -> tuple[LocalizationNet, Path]:
    """Train; returns the (unwrapped) model and the path of `<out>/model.pt` (written by rank 0). A process
    group this call joins is left at its end; one that was already there (a data folder trained category after
    category, train.runs) is kept for the next run."""
    owned = not dist.is_initialized()
    rank, world, local_rank = setup_distributed(cfg.device)
    distributed = dist.is_initialized()
    master = rank == 0
    device = pick_device(cfg.device, local_rank)
    cuda = device.type == "cuda"
    out = Path(cfg.out)
    last_path, model_path, log_path = out / "last.pt", out / "model.pt", out / "log.jsonl"
    model_cfg = model_config(cfg)
    torch.manual_seed(cfg.seed)

    # data: every rank reads its own share of each epoch's permutation
    data = training_data(cfg.shards, model_cfg.size, cfg.normal_fraction, cfg.seed, cfg.flips, cfg.jitter,
                         verify=cfg.verify, cache_dir=cfg.cache_dir)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch == 0:
        raise ShardError(f"{cfg.shards}: {len(data)} samples, fewer than --batch-size {cfg.batch_size} "
                         f"x {world} process(es)")
    total = cfg.steps if cfg.steps else (cfg.epochs * per_epoch if cfg.epochs else DEFAULT_STEPS)
    end = min(total, cfg.stop_at) if cfg.stop_at else total  # stop_at: pause there, schedule unchanged

    # model, optimizer, schedule
    model = LocalizationNet(model_cfg).to(device)
    if model_cfg.arch == "composition":
        model.composition = fit_on_shards(data, cfg.shards, say if master else None)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    lr = cfg.lr if cfg.lr is not None else LEARNING_RATES[model_cfg.preset]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones(total), gamma=LR_GAMMA)
    step = 0
    if cfg.resume and last_path.is_file():
        step = restore(last_path, model, model_cfg, opt, sched, device)
        sched.milestones = type(sched.milestones)(milestones(total))  # --steps may have changed
        for group in opt.param_groups:
            group["lr"] = lr * LR_GAMMA ** bisect.bisect_right(milestones(total), step)
        if master:
            say(f"resuming {last_path} at step {step} of {total}")
    elif cfg.resume and master:
        say(f"nothing to resume in {out}: starting afresh")
    if master:
        out.mkdir(parents=True, exist_ok=True)
        keep_log(log_path, step)
        (out / "train.json").write_text(json.dumps(
            {"train": {k: _plain(v) for k, v in asdict(cfg).items()},
             "model": model_cfg.to_dict(), "total_steps": total, "world_size": world,
             "distributed": distributed}, indent=2) + "\n")
    net = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None) if distributed else model

    saved = [step if step else None]   # the step model.pt/last.pt hold (None: nothing of this run yet)

    def checkpoint() -> None:
        if distributed:
            average_buffers(model)  # every rank calls the collective; then all hold the saved statistics
        if not master:
            return
        extra = {"step": step, "total_steps": total, "categories": list(data.categories)}
        saved[0] = step
        save_checkpoint(model_path, model, model_cfg, extra)
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(device)}
        save_checkpoint(last_path, model, model_cfg, {**extra, **state})
        plot_losses(log_path, out / "loss.png")

    order = SkipSampler(sampler, 0, 0)  # epoch and skip are set per epoch; workers stay alive across epochs
    loader = DataLoader(data, batch_size=cfg.batch_size, sampler=order, num_workers=cfg.workers,
                        pin_memory=cuda, drop_last=True, persistent_workers=cfg.workers > 0)
    bar = progress(None, "train", total=total, initial=step, disable=not master)
    start = step
    sums: dict[str, torch.Tensor] = {}
    tick, tick_step, waited = time.perf_counter(), step, 0.0
    net.train()
    while step < end:
        epoch, skip = divmod(step, per_epoch)
        order.epoch, order.skip = epoch, skip * cfg.batch_size
        asked = time.perf_counter()
        for raw in loader:
            waited += time.perf_counter() - asked  # blocked on the loader, not on the device
            batch = to_float(raw, device)
            x = batch["image"].contiguous(memory_format=torch.channels_last) if cuda else batch["image"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                outputs = net(x)
            losses = total_loss(outputs, batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0
                                                  else math.inf)
            if not bool(torch.isfinite(losses["total"]) & torch.isfinite(norm)):   # before the update
                stop_non_finite(step + 1, losses, norm, model_path, saved[0])
            opt.step()
            sched.step()
            step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()

            if step % cfg.log_every == 0 or step == end:
                n = step - tick_step
                mean = {k: float(v) / n for k, v in sums.items()}
                now = time.perf_counter()  # after float(): on CUDA the interval's queued steps have run
            if master and (step % cfg.log_every == 0 or step == end):
                rate = n * cfg.batch_size * world / max(now - tick, 1e-9)
                line = {"step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"], "loss": mean,
                        "samples_per_s": round(rate, 2), "loader_wait": round(waited / max(now - tick, 1e-9), 4)}
                if cuda:
                    line["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                with open(log_path, "a") as f:
                    f.write(json.dumps(line) + "\n")
                bar.set_postfix(loss=f"{mean['total']:.4f}", seg=f"{mean['seg']:.4f}", sps=f"{rate:.0f}")
            if step % cfg.log_every == 0 or step == end:
                sums, tick, tick_step, waited = {}, time.perf_counter(), step, 0.0
            bar.update(1)
            if step % cfg.ckpt_every == 0 or step == end:
                checkpoint()
            if step >= end:
                break
            asked = time.perf_counter()
    if start >= end:  # resumed a finished run: (re)write its model.pt, on every rank for the collective
        checkpoint()
    bar.close()
    if distributed:
        dist.barrier()
        if owned:
            dist.destroy_process_group()
    return model, model_path


def stop_non_finite(step: int, losses: dict, norm: torch.Tensor, model_path: Path, saved: int | None) -> None:
    """Stop a run whose loss or gradient turned NaN/inf at `step`, before the update touches the weights;
    the checkpoints on disk (the last good ones, of step `saved`) are left as they are."""
    values = ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in losses.items())
    where = (f"{model_path} and last.pt beside it keep the last good checkpoint, step {saved} (--resume "
             "continues from there)" if saved else "no checkpoint of this run was written before it")
    raise LogicalError(f"training stopped at step {step}: the loss or its gradient is not finite ({values}; "
                       f"gradient norm {float(norm):.4g}); {where}. Try a lower --lr.")


def average_buffers(model: torch.nn.Module) -> None:
    """Average BatchNorm running statistics over the processes (DDP syncs them only at the next forward)."""
    world = dist.get_world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The network's config for `cfg`; LogicalError (the smallest size that works) when it cannot train."""
    try:
        model_cfg = make_config(cfg.preset, cfg.size, cfg.arch)
        check_trainable(model_cfg, cfg.batch_size)
    except ValueError as exc:
        raise LogicalError(f"--preset/--size/--arch: {exc}") from None
    return model_cfg


def train(cfg: TrainConfig) -> Path:
    """Train and return the path of `<out>/model.pt`. Rank 0 holds the write lock of `<out>` throughout
    (synth.lock: a second run into the same folder stops at once, FolderBusyError); a config that cannot
    train is refused first, so a refused run leaves no folder behind."""
    model_config(cfg)
    with folder_lock(cfg.out) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
        return fit(cfg)[1]


def _plain(value):
    """A TrainConfig value as JSON: paths (also in lists) as strings."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def keep_log(path: Path, step: int) -> None:
    """Keep log lines up to `step`: a resumed run rewrites what followed its checkpoint, a fresh one all."""
    lines = []
    if step > 0 and path.is_file():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    lines.append(line)
            except (ValueError, KeyError, TypeError):
                continue
    path.write_text("".join(line + "\n" for line in lines))



def plot_losses(log_path: Path, png_path: Path, width: int = 800, height: int = 480) -> None:
    """Draw the loss curves of a JSON-lines log (log scale) into a PNG with OpenCV (no matplotlib)."""
    rows = []
    for line in log_path.read_text().splitlines() if log_path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 20, 40
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    names = ["total", "img", "jnd", "edge", "seg", "global"]
    series = {n: [(r["step"], r["loss"][n]) for r in rows if r.get("loss", {}).get(n, 0) > 0] for n in names}
    points = [p for s in series.values() for p in s]
    if points:
        s0, s1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = (math.log10(v) for v in (min(p[1] for p in points), max(p[1] for p in points)))
        s1, y1 = max(s1, s0 + 1), max(y1, y0 + 1e-3)

        def xy(step: float, value: float) -> tuple[int, int]:
            x = left + (step - s0) / (s1 - s0) * (width - left - right)
            y = height - bottom - (math.log10(value) - y0) / (y1 - y0) * (height - top - bottom)
            return int(round(x)), int(round(y))

        for k, name in enumerate(names):
            pts = np.array([xy(*p) for p in series[name]], np.int32)
            if len(pts):
                cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, COLOURS[k], 2 if name == "total" else 1,
                              cv2.LINE_AA)
            cv2.putText(img, name, (width - right - 80, top + 18 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        COLOURS[k], 1, cv2.LINE_AA)
        for frac in (0.0, 0.5, 1.0):
            value = 10 ** (y0 + frac * (y1 - y0))
            _, y = xy(s0, value)
            cv2.putText(img, f"{value:.3g}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"step {s0}", (left, height - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.putText(img, f"step {s1}", (width - right - 90, height - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1)
    cv2.putText(img, "loss (log scale)", (left + 8, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    save_image(png_path, img)

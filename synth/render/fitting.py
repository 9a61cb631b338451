"""Fit the edge-to-image generator on one category's normal images (pix2pixHD losses, DeepSIM augmentation).

LSGAN + discriminator feature matching (lambda 10), Adam 2e-4 (0.5, 0.999), constant lr for the first half of
the steps then linear decay to 0. Augmentation keeps *edited* edge maps in distribution: TPS warps and crops
(same on edges and image), plus erased edge blobs and stray strokes (edges only). After fitting, SSIM
between G(E_j) and I on held-out normals is stored as the checkpoint's "quality", the reference for
collapse rejection.

Both generator kinds use this one loop (`kind`): "global" (the paper's: edges -> image) and "inpaint"
(synth.render.inpaint: image with a hole + hole + edges -> the hole repainted; its losses count only the
hole, its quality is SSIM inside edit-sized holes, and it adds an SSIM loss term).

Two files: `<out>` holds only what inference needs (config, edges, size, G's weights, quality, provenance);
`<out stem>.train.pt` beside it holds the training state (G, discriminator, optimizers, epoch, step) that
`resume` reads. Both are rewritten atomically at every periodic checkpoint and at the end.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from synth import defaults
from synth.bitdepth import data_depth
from synth.checkpoint import load_torch
from synth.console import progress as progress_bar
from synth.console import say
from synth.errors import CheckpointError, DatasetError, LogicalError
from synth.images import load_rgb, resize_rgb, save_image
from synth.render.generator import (
    FORMAT,
    KINDS,
    VERSION,
    GeneratorConfig,
    GeneratorRenderer,
    GlobalGenerator,
    MultiscaleDiscriminator,
    check_compatible,
    check_payload,
    config_for,
    init_weights,
    resolve_device,
    save_checkpoint,
)
from synth.render.inpaint import (
    InpaintRenderer,
    condition,
    hole_quality,
    hole_source,
    inpaint_config,
    inpaint_grid,
    training_sample,
)
from synth.rng import derive_seed
from synth.sheet import contact_sheet
from synth.ssim import ssim, ssim_map_torch
from synth.warp import random_tps, remap

# Training defaults per preset. base follows pix2pixHD and the paper (300 epochs, no pixel loss). tiny is
# tuned for a few CPU minutes (ours): an L1 pixel term (lambda 10) and a higher lr converge much faster in so
# few steps (toybox validation SSIM: 40 epochs lr 2e-4 0.51 without L1, 0.61 with; 30 epochs lr 5e-4 with L1
# 0.65, and fewer wrongly coloured parts).
FIT_DEFAULTS: dict[str, dict] = {
    "tiny": {"epochs": 30, "batch_size": 4, "lr": 5e-4, "lambda_l1": 10.0},
    "base": {"epochs": 300, "batch_size": 16, "lr": 2e-4, "lambda_l1": 0.0},
}
# Quality is measured on held-out train images when a category has no validation normals: a share of the
# category (at least 1 image, at most 32 as for validation), so fitting keeps most images. Below
# MIN_FIT_IMAGES the generator will be weak: it is fitted on every image and its quality, measured on those
# same training images, is labelled so (optimistic).
HELD_OUT_FRACTION = 0.1
MAX_HELD_OUT = 32
MIN_FIT_IMAGES = 10
# The inpainting kind (ours) on top of its preset's defaults: L1 and SSIM inside the hole, as EdgeConnect's
# inpainting stage trains with a pixel term next to the adversarial ones; no edge dropout or stray strokes
# (edges it is given must be followed, not second-guessed: an edit's new strokes have no pixels yet).
KIND_DEFAULTS: dict[str, dict] = {
    "global": {"lambda_ssim": 0.0},
    "inpaint": {"lambda_l1": 10.0, "lambda_ssim": 5.0},
}
# Epochs of the inpainting kind per preset. Only hole pixels teach it, so at tiny's 30 epochs it has not yet
# learnt to follow edges where the context predicts the hole well (hazelnut_toy, 128 px: hole SSIM 0.713 and
# "erased visible" 0.00 at 30 epochs; 0.785 and 0.22 at 100, ~4 CPU minutes; benchmarks/hole_quality.py).
# Presets not listed keep their own epochs (base: 300).
INPAINT_EPOCHS: dict[str, int] = {"tiny": 100}
TRAIN_FORMAT = "logical-generator-train"
TRAIN_KEYS = ("disc", "opt_g", "opt_d", "epoch", "step")


@dataclass(frozen=True)
class Augment:
    """Per-sample augmentation probabilities and ranges (drawn from the epoch's numpy rng)."""

    tps: float = 0.7                      # DeepSIM TPS warp, 3x3 control grid
    tps_shift: float = 0.1                # control-point shift, fraction of the width
    crop: float = 0.5                     # random crop, resized back
    crop_scale: tuple[float, float] = (0.8, 1.0)
    dropout: float = 0.3                  # erase edges in 1-3 blobs
    strokes: float = 0.3                  # add 1-3 short strokes
    flips: bool = False                   # horizontal flips (only where the category allows)


def augment(image: np.ndarray, edge: np.ndarray, rng: np.random.Generator,
            aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (image uint8 (H,W,3), edge float32 (H,W)) pair."""
    h, w = edge.shape
    if rng.random() < aug.tps:
        maps = random_tps((h, w), rng, grid=3, max_shift=aug.tps_shift)
        image, edge = remap(image, maps), remap(edge, maps)
    if rng.random() < aug.crop:
        s = rng.uniform(*aug.crop_scale)
        ch, cw = max(8, round(s * h)), max(8, round(s * w))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        image = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        edge = cv2.resize(edge[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    edge = np.array(edge, dtype=np.float32)
    if rng.random() < aug.dropout:
        ys, xs = np.nonzero(edge > 0.5)
        for _ in range(rng.integers(1, 4) if len(ys) else 0):
            k = rng.integers(len(ys))
            axes = (int(rng.uniform(0.03, 0.08) * w), int(rng.uniform(0.03, 0.08) * h))
            cv2.ellipse(edge, (int(xs[k]), int(ys[k])), axes, float(rng.uniform(0, 180)), 0, 360, 0.0, -1)
    if rng.random() < aug.strokes:
        for _ in range(rng.integers(1, 4)):
            start = rng.uniform(0, 1, 2) * (w, h)
            steps = rng.normal(0, 1, (2, 2)) * rng.uniform(0.02, 0.06) * w
            pts = np.cumsum(np.vstack([start, steps]), axis=0).round().astype(np.int32)
            cv2.polylines(edge, [pts], False, 1.0, 1)
    if aug.flips and rng.random() < 0.5:
        image, edge = image[:, ::-1], edge[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(edge)


# ---------------------------------------------------------------- losses and one step


def _gan_loss(preds: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """LSGAN: MSE of every scale's patch scores to 1 (real) or 0 (fake), summed over scales."""
    return sum(F.mse_loss(p[-1].float(), torch.full_like(p[-1].float(), float(real))) for p in preds)


def _feature_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]],
                  n_layers: int) -> torch.Tensor:
    """pix2pixHD feature matching: L1 over every intermediate feature, weighted 4/(n_layers+1) / num_d."""
    weight = 4.0 / (n_layers + 1) / len(fake)
    return sum(weight * F.l1_loss(f.float(), r.detach().float())
               for fs, rs in zip(fake, real, strict=True) for f, r in zip(fs[:-1], rs[:-1], strict=True))


def _pixel_losses(fake: torch.Tensor, real: torch.Tensor, hole: torch.Tensor | None, lambda_l1: float,
                  lambda_ssim: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, 1 - SSIM) weighted, over the whole image or, with `hole` (B,1,H,W), over its pixels only."""
    zero = torch.zeros((), device=fake.device)
    diff = (fake.float() - real.float()).abs()
    if hole is None:
        l1 = diff.mean() * lambda_l1 if lambda_l1 else zero
        s = (1.0 - ssim_map_torch((fake + 1) / 2, (real + 1) / 2).mean()) * lambda_ssim if lambda_ssim else zero
        return l1, s
    area = hole.float().sum().clamp(min=1.0)
    l1 = (diff * hole).sum() / (area * diff.shape[1]) * lambda_l1 if lambda_l1 else zero
    s = zero
    if lambda_ssim:
        per_pixel = ssim_map_torch((fake + 1) / 2, (real + 1) / 2).mean(dim=1, keepdim=True)
        s = (1.0 - (per_pixel * hole).sum() / area) * lambda_ssim
    return l1, s


def train_step(gen: GlobalGenerator, disc: MultiscaleDiscriminator, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, edges: torch.Tensor, real: torch.Tensor,
               lambda_feat: float = 10.0, lambda_l1: float = 0.0, hole: torch.Tensor | None = None,
               lambda_ssim: float = 0.0) -> dict[str, float]:
    """One generator update then one discriminator update (pix2pixHD order); returns the losses.

    `edges` is the generator's input (the edge maps, or the inpainting kind's `condition`). With `hole`
    (B,1,H,W) in {0,1} the output is pasted into `real` outside the hole before any loss, as it will be used.
    """
    n_layers = len(disc.scales[0].groups) - 2
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if edges.is_cuda else nullcontext()
    with amp:
        fake = gen(edges)
        if hole is not None:
            fake = fake * hole + real * (1.0 - hole)
        pred_real = disc(edges, real)
        disc.requires_grad_(False)
        pred_fake = disc(edges, fake)
        disc.requires_grad_(True)
        g_gan = _gan_loss(pred_fake, True)
        g_feat = _feature_loss(pred_fake, pred_real, n_layers) * lambda_feat
    g_l1, g_ssim = _pixel_losses(fake, real, hole, lambda_l1, lambda_ssim)
    opt_g.zero_grad(set_to_none=True)
    (g_gan + g_feat + g_l1 + g_ssim).backward()
    opt_g.step()
    with amp:
        d_fake = _gan_loss(disc(edges, fake.detach()), False)
        d_real = _gan_loss(pred_real, True)
    opt_d.zero_grad(set_to_none=True)
    (0.5 * (d_fake + d_real)).backward()
    opt_d.step()
    return {"g_gan": g_gan.item(), "g_feat": g_feat.item(), "g_l1": g_l1.item(), "g_ssim": g_ssim.item(),
            "d_real": d_real.item(), "d_fake": d_fake.item()}


def lr_at(step: int, total: int, base: float) -> float:
    """Constant for the first half of the steps, then linear decay towards 0."""
    return base * min(1.0, 2.0 * (1.0 - step / max(total, 1)))


# ---------------------------------------------------------------- helpers


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]],
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    edges = torch.from_numpy(np.stack([e for _, e in pairs]))[:, None]
    images = torch.from_numpy(np.stack([im for im, _ in pairs])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return (edges.to(device).contiguous(memory_format=memory),
            images.to(device).contiguous(memory_format=memory))


def quality_of(renderer: GeneratorRenderer, images: list[np.ndarray], edges: list[np.ndarray]) -> dict:
    """SSIM(G(E_j), I_j) over normal images: mean, std, 5th percentile and every value."""
    renders = renderer.render(np.stack(edges))
    values = [ssim(r, im) for r, im in zip(renders, images, strict=True)]
    return {"ssim_mean": float(np.mean(values)), "ssim_std": float(np.std(values)),
            "ssim_p05": float(np.percentile(values, 5)), "ssim_values": [float(v) for v in values]}


def sample_grid(renderer: GeneratorRenderer, images: list[np.ndarray], edges: list[np.ndarray],
                path: Path, rows: int = 4) -> None:
    """Save a contact sheet of rows (edges | generated | real), each labelled with its SSIM, for a visual
    check."""
    renders = renderer.render(np.stack(edges[:rows]))
    tiles = [[e, r, im] for e, r, im in zip(edges[:rows], renders, images[:rows], strict=True)]
    labels = [f"SSIM {ssim(r, im):.3f}" for _, r, im in tiles]
    save_image(path, contact_sheet(tiles, labels, ["edges", "generated", "real"]))


def samples_path(out: Path) -> Path:
    """Where fit_generator writes its sample grid: `<out stem>_samples.png` next to the checkpoint."""
    return Path(out).with_name(Path(out).stem + "_samples.png")


def train_state_path(out: Path) -> Path:
    """Where fit_generator keeps the training state: `<out stem>.train.pt` next to the checkpoint."""
    return Path(out).with_name(Path(out).stem + ".train.pt")


def read_train_state(out: Path) -> dict:
    """The training state saved next to checkpoint `out` (config as a GeneratorConfig); CheckpointError when
    it is missing, corrupt or incomplete."""
    path = train_state_path(out)
    if not path.is_file():
        raise CheckpointError(f"no training state next to {out}: cannot resume ({path.name} is missing; "
                              "drop --resume to start over)")
    state = check_payload(path, load_torch(path, "generator training state", TRAIN_FORMAT, VERSION))
    missing = [k for k in TRAIN_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {', '.join(missing)}: cannot resume; "
                              "drop --resume to start over")
    return state


def _prepare(images: list[np.ndarray], edges: list[np.ndarray], size: int) -> tuple[list, list]:
    if len(images) != len(edges):
        raise ValueError(f"{len(images)} images but {len(edges)} edge maps")
    imgs = [resize_rgb(np.asarray(im, np.uint8), size) for im in images]
    eds = [np.asarray(e, np.float32) for e in edges]
    eds = [e if e.shape == (size, size) else cv2.resize(e, (size, size), interpolation=cv2.INTER_AREA)
           for e in eds]
    return imgs, eds


# ---------------------------------------------------------------- fitting


def fit_generator(images: list[np.ndarray], edges: list[np.ndarray], config: GeneratorConfig, epochs: int,
                  out: Path, *, edges_identity: str = "unknown", resume: bool = False, seed: int = 0,
                  batch_size: int = 4, lr: float = 2e-4, lambda_feat: float = 10.0, lambda_l1: float = 0.0,
                  sample_every: int = 10, checkpoint_every: int = 5, held_out: int = 4,
                  val_images: list[np.ndarray] | None = None, val_edges: list[np.ndarray] | None = None,
                  aug: Augment | None = None, device: str = "auto", progress: bool = True,
                  stop_after: int | None = None, kind: str = "global", lambda_ssim: float = 0.0) -> Path:
    """Fit G on (edge map, normal image) pairs and write a checkpoint to `out`; returns `out`.

    `kind` "global" fits the paper's generator (`config` as given); "inpaint" fits the inpainting kind
    (synth.render.inpaint; `config` gets its 5 input channels, holes are drawn per example, the edge dropout
    and stray strokes of `aug` are off, and quality is SSIM inside edit-sized holes).

    Quality is measured on `val_images`/`val_edges` when given, else on `held_out` train images kept out of
    fitting. `resume=True` continues from the epoch and step saved next to `out` (`train_state_path`; same
    config and edges required).
    `stop_after` ends a time-boxed run after that epoch (the lr schedule still spans `epochs`), leaving a
    checkpoint without quality to resume from.
    """
    out = Path(out)
    if kind not in KINDS:
        raise ValueError(f"generator kind {kind!r}: choose {', '.join(KINDS)}")
    inpaint = kind == "inpaint"
    aug = aug or (Augment(dropout=0.0, strokes=0.0) if inpaint else Augment())
    config = inpaint_config(config) if inpaint else config
    imgs, eds = _prepare(images, edges, config.size)
    if val_images:
        vimgs, veds = _prepare(val_images, val_edges or [], config.size)
        train_idx, on = list(range(len(imgs))), "validation"
    else:
        k = min(held_out, len(imgs) - 1)
        pick = np.random.default_rng(derive_seed(seed, "held-out")).choice(len(imgs), k, replace=False)
        held = set(pick.tolist())
        train_idx = [i for i in range(len(imgs)) if i not in held]
        vimgs, veds = [imgs[i] for i in sorted(held)], [eds[i] for i in sorted(held)]
        on = "held-out" if held else "train"
        if not held:
            vimgs, veds = imgs, eds
    if not train_idx:
        raise DatasetError("no normal images to fit the generator on")
    holes_from = {i: hole_source(imgs[i], eds[i]) for i in train_idx} if inpaint else {}

    dev = resolve_device(device)
    torch.manual_seed(seed)
    gen, disc = GlobalGenerator(config), MultiscaleDiscriminator(config)
    init_weights(gen)
    init_weights(disc)
    memory = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    gen, disc = gen.to(dev, memory_format=memory), disc.to(dev, memory_format=memory)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    start_epoch, step = 0, 0
    if resume and (out.exists() or train_state_path(out).exists()):
        start_epoch, step = _restore(out, config, edges_identity, gen, disc, opt_g, opt_d)
        say(f"resuming {out} at epoch {start_epoch} (step {step})")
    elif resume:
        say(f"no checkpoint at {out} yet: fitting from scratch")

    def checkpoint(epoch: int, quality: dict) -> None:
        """`out` for inference, then the training state beside it."""
        payload = {"format": FORMAT, "version": VERSION, "kind": kind, "config": config.to_dict(),
                   "edges": edges_identity,
                   "size": config.size, "state_dict": _cpu(gen.state_dict()), "quality": quality,
                   "epochs": epochs, "seed": seed}
        save_checkpoint(out, payload)
        save_checkpoint(train_state_path(out), payload | {
            "format": TRAIN_FORMAT, "disc": _cpu(disc.state_dict()), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "epoch": epoch, "step": step})

    def renderer() -> GeneratorRenderer:
        return (InpaintRenderer if inpaint else GeneratorRenderer)(gen, config, edges_identity, device=dev)

    def batch(order: list[int], rng: np.random.Generator) -> tuple:
        """(input, real, hole or None) of one batch of augmented examples."""
        if not inpaint:
            return (*_batch([augment(imgs[i], eds[i], rng, aug) for i in order], dev), None)
        made = [training_sample(imgs[i], eds[i], *holes_from[i], rng, aug) for i in order]
        cond, real = _batch([(im, e) for im, e, _ in made], dev)
        hole = torch.from_numpy(np.stack([h for _, _, h in made]).astype(np.float32))[:, None].to(dev)
        return condition(real, hole, cond), real, hole

    def grid() -> None:
        (inpaint_grid if inpaint else sample_grid)(renderer(), vimgs, veds, samples_path(out))

    per_epoch = math.ceil(len(train_idx) / batch_size)
    total = epochs * per_epoch
    bar = progress_bar(range(step, max(total, step)), desc="fit-generator", total=total, initial=step) \
        if progress else None
    for epoch in range(start_epoch, min(epochs, stop_after or epochs)):
        rng = np.random.default_rng(derive_seed(seed, "fit-generator", epoch))
        order = rng.permutation(train_idx)
        gen.train()
        for b in range(per_epoch):
            cond, real, hole = batch(order[b * batch_size:(b + 1) * batch_size], rng)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, lr)
            losses = train_step(gen, disc, opt_g, opt_d, cond, real, lambda_feat, lambda_l1, hole, lambda_ssim)
            step += 1
            if not all(math.isfinite(v) for v in losses.values()):
                _stop_non_finite(out, epoch, step, losses, checkpoint_every)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()
                                 if (k != "g_l1" or lambda_l1) and (k != "g_ssim" or lambda_ssim)})
        done = epoch + 1
        if checkpoint_every and done % checkpoint_every == 0 and done < epochs:
            checkpoint(done, {})
        if sample_every and done % sample_every == 0 and done < epochs:
            grid()
    if bar is not None:
        bar.close()
    if stop_after is not None and stop_after < epochs:
        checkpoint(max(stop_after, start_epoch), {})
        return out
    measure = hole_quality(renderer(), vimgs, veds, seed) if inpaint else quality_of(renderer(), vimgs, veds)
    quality = measure | {"on": on, "n": len(vimgs)}
    if on == "train":
        quality["note"] = "measured on the training images (none held out): optimistic"
    checkpoint(max(epochs, start_epoch), quality)
    grid()
    what = "SSIM inside edit-sized holes" if inpaint else "SSIM(G(E), I)"
    label = "training images (none held out: optimistic)" if on == "train" else f"{on} images"
    say(f"generator quality ({kind}), {what} on {len(vimgs)} {label}: mean {quality['ssim_mean']:.3f}, "
        f"std {quality['ssim_std']:.3f}, p05 {quality['ssim_p05']:.3f}")
    return out


def _stop_non_finite(out: Path, epoch: int, step: int, losses: dict, every: int) -> None:
    """Stop a fit whose losses turned NaN/inf; the checkpoints already on disk are left untouched."""
    values = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
    kept = (f"{out} and {train_state_path(out).name} keep the last periodic checkpoint (every {every} "
            "epochs; --resume continues from it)" if out.is_file() else "no checkpoint was written")
    raise LogicalError(f"fit-generator stopped at epoch {epoch + 1}, step {step}: a loss is not finite "
                       f"({values}); {kept}. Try a smaller --batch-size or another --seed.")


def held_out_count(n: int) -> int:
    """Train images kept out of fitting to measure quality when there are no validation normals: 10% of
    the category (at least 1, at most MAX_HELD_OUT); none below MIN_FIT_IMAGES (every image is fitted)."""
    if n < MIN_FIT_IMAGES:
        return 0
    return max(1, min(MAX_HELD_OUT, round(HELD_OUT_FRACTION * n)))


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _restore(out: Path, config: GeneratorConfig, edges_identity: str, gen: GlobalGenerator,
             disc: MultiscaleDiscriminator, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer) -> tuple[int, int]:
    ckpt = read_train_state(out)
    if ckpt["config"] != config:
        raise CheckpointError(f"{out} was fitted with {ckpt['config']}, not {config}: use the same "
                              "--preset and --size to resume, or drop --resume to start over")
    check_compatible(out, ckpt, edges_identity, None)
    try:
        gen.load_state_dict(ckpt["state_dict"])
        disc.load_state_dict(ckpt["disc"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{out}: training state does not match the model ({exc})") from None
    return int(ckpt["epoch"]), int(ckpt["step"])


def fit_for_category(dataset: str, root: Path | None, category: str, size: int | None = None,
                     preset: str = "tiny", epochs: int | None = None, out: Path | None = None,
                     edges: str = defaults.EDGES, pidinet_weights: Path | None = None, *,
                     batch_size: int | None = None, resume: bool = False, seed: int = 0,
                     device: str = "auto", progress: bool = True, kind: str = defaults.GENERATOR_KIND,
                     bits: int | None = None) -> Path:
    """Read a category's normal images, compute their edges, fit the generator of `kind` (global |
    inpaint); the checkpoint path.

    Default output: data/<dataset>/<category>/generator.pt. Validation normals (LOCO, toybox) measure quality;
    otherwise a few train images are held out. `bits`: the category's data depth when the caller has
    decided it (synth.bitdepth.data_depth), else decided here.
    """
    from synth.datasets import open_dataset
    from synth.edges import get_extractor

    config = config_for(preset, size)
    if kind not in KINDS:
        raise LogicalError(f"--kind {kind}: choose {', '.join(KINDS)}")
    defaults = FIT_DEFAULTS[preset] | KIND_DEFAULTS[kind]
    if kind == "inpaint":
        defaults["epochs"] = INPAINT_EPOCHS.get(preset, defaults["epochs"])
    out = Path(out) if out is not None else Path("data") / dataset / category / "generator.pt"
    reader = open_dataset(dataset, root)
    train_paths = reader.train_images(category)
    if not train_paths:
        raise DatasetError(f"{reader.root}: category {category!r} has no train images to fit a generator on")
    val_paths = reader.validation_images(category)[:32]
    extractor = get_extractor(edges, pidinet_weights)
    if bits is None:                        # the category's one scale, as build uses (build passes its own)
        bits = data_depth(train_paths).bits

    def read(paths: list[Path], what: str) -> tuple[list, list]:
        bar = progress_bar(paths, desc=f"reading {what} images", total=len(paths)) if progress else paths
        imgs = [resize_rgb(load_rgb(p, bits), config.size) for p in bar]
        batch = getattr(extractor, "batch", None)
        return imgs, list(batch(imgs)) if batch else [extractor(im) for im in imgs]

    images, edge_maps = read(train_paths, "train")
    val_images, val_edges = read(val_paths, "validation") if len(val_paths) >= 2 else (None, None)
    held_out = 0 if val_images else held_out_count(len(images))
    if len(images) < MIN_FIT_IMAGES:
        where = ("quality is measured on the validation images" if val_images else
                 "quality is measured on those same training images (optimistic)")
        say(f"warning: {category} has {len(images)} normal train images, fewer than {MIN_FIT_IMAGES}: the "
            f"generator will be weak; fitting on all {len(images)}, {where}")
    return fit_generator(images, edge_maps, config, epochs or defaults["epochs"], out, held_out=held_out,
                         edges_identity=extractor.identity, resume=resume, seed=seed,
                         batch_size=batch_size or defaults["batch_size"], lr=defaults["lr"],
                         lambda_l1=defaults["lambda_l1"], lambda_ssim=defaults["lambda_ssim"], kind=kind,
                         val_images=val_images, val_edges=val_edges, device=device, progress=progress)

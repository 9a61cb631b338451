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
from pathlib import Path

import cv2
import numpy as np
import torch

from synth import defaults
from synth.console import progress as progress_bar
from synth.console import say
from synth.datasets.bitdepth import data_depth
from synth.datasets.images import load_rgb, resize_rgb, save_image
from synth.errors import CheckpointError, DatasetError, LogicalError
from synth.lock import file_lock
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
from synth.render.holes import hole_quality, hole_source, inpaint_grid, training_sample
from synth.render.inpaint import InpaintRenderer, condition, inpaint_config
from synth.render.training import (
    FIT_DEFAULTS,
    INPAINT_EPOCHS,
    KIND_DEFAULTS,
    Augment,
    _batch,
    augment,
    lr_at,
    train_step,
)
from synth.rng import derive_seed
from synth.sheet import contact_sheet
from synth.ssim import ssim
from synth.store.checkpoint import load_torch

# Quality is measured on held-out train images when a category has no validation normals: a share of the
# category (at least 1 image, at most 32 as for validation), so fitting keeps most images. Below
# MIN_FIT_IMAGES the generator will be weak: it is fitted on every image and its quality, measured on those
# same training images, is labelled so (optimistic).
HELD_OUT_FRACTION = 0.1


MAX_HELD_OUT = 32


MIN_FIT_IMAGES = 10


TRAIN_FORMAT = "logical-generator-train"


TRAIN_KEYS = ("disc", "opt_g", "opt_d", "epoch", "step")


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


# One function on purpose (~125 lines): the fit loop's state (networks, optimizers, rng, step) is shared by
# its small closures (checkpoint, batch, grid); split, it would travel through every signature.
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
    decided it (synth.datasets.bitdepth.data_depth), else decided here.
    """
    from synth.datasets import open_dataset
    from synth.features.edges import get_extractor

    config = config_for(preset, size)
    if kind not in KINDS:
        raise LogicalError(f"--kind {kind}: choose {', '.join(KINDS)}")
    defaults = FIT_DEFAULTS[preset] | KIND_DEFAULTS[kind]
    if kind == "inpaint":
        defaults["epochs"] = INPAINT_EPOCHS.get(preset, defaults["epochs"])
    out = Path(out) if out is not None else Path("data") / dataset / category / "generator.pt"
    with file_lock(out):                # one writer per generator file (build fits through here too)
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

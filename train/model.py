"""The localization network: DRAEM's two sub-networks, extended as LogicAL (image, JND and edge heads).

Reconstruction sub-network: encoder-decoder (no skips) from the input image to the normal image I_rec,
its JND map J_rec and its edge map E_rec. Segmentation sub-network: U-Net with skips on
concat(input, I_rec, J_rec, E_rec) (8 channels) to 2-class logits. With the `base` preset both match
the official DRAEM shapes (VitjanZ/DRAEM model_unet.py, widths 128 and 64).

`arch` "paper" is that network exactly (its checkpoints carry no `arch` field, as before the field existed);
"attention" and "bottleneck" add a global branch (train/global_branch.py) between the segmentation encoder and
decoder, with its own coarse map and image logit; "composition" is the paper's network (trained exactly as it)
plus a fitted composition branch (train/composition.py) that counts parts and compares them with the normal
images'. `combine` says how the branches make the final map and image score (COMBINES).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from synth.errors import CheckpointError
from synth.store.checkpoint import load_torch, save_torch
from train.composition import Composition
from train.global_branch import DESIGNS, make_branch

FORMAT = "logical-localizer"
VERSION = 1
ARCHS = ("paper", *DESIGNS, "composition")
# final map / image score: "seg" the U-Net's map alone, "mean" the mean of the U-Net's and the global branch's
# probability maps, "max" their pixel-wise maximum; "+logit": the image score is the mean of the pooled map's
# max and the global branch's image probability (else the pooled max alone, DRAEM's score)
COMBINES = ("seg", "mean", "max", "seg+logit", "mean+logit", "max+logit")
# logical-train's default network: the one that measured best (BENCHMARKS.md, "A localizer that sees the whole
# image": bag logical image AUROC 57 -> 91, no category lost); train.loop.TrainConfig keeps "paper" for the API
DEFAULT_ARCH = "composition"
DEFAULT_COMBINE = {"attention": "mean+logit", "bottleneck": "mean+logit", "composition": "mean+logit"}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored in checkpoints as a plain dict."""

    preset: str = "base"
    size: int = 256  # training resolution (pixels, square)
    rec_widths: tuple[int, ...] = (128, 256, 512, 1024, 1024)
    seg_widths: tuple[int, ...] = (64, 128, 256, 512, 512, 512)
    arch: str = "paper"  # one of ARCHS
    combine: str = "seg"  # one of COMBINES; "seg" for the paper's network

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.combine not in COMBINES or (self.arch == "paper" and self.combine != "seg"):
            raise ValueError(f"combine {self.combine!r} does not fit arch {self.arch!r} (choose from "
                             f"{', '.join(COMBINES)}; the paper's network has only 'seg')")

    def to_dict(self) -> dict:
        """Plain dict; the paper's network leaves `arch` and `combine` out (the format before they existed)."""
        d = asdict(self)
        d["rec_widths"], d["seg_widths"] = list(self.rec_widths), list(self.seg_widths)
        if self.arch == "paper":
            del d["arch"], d["combine"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """ValueError/KeyError/TypeError on a bad dict; no `arch` means the paper's network."""
        return cls(
            preset=str(d["preset"]),
            size=int(d["size"]),
            rec_widths=tuple(int(w) for w in d["rec_widths"]),
            seg_widths=tuple(int(w) for w in d["seg_widths"]),
            arch=str(d.get("arch", "paper")),
            combine=str(d.get("combine", "seg")),
        )


PRESETS: dict[str, ModelConfig] = {
    "base": ModelConfig(),
    "small": ModelConfig("small", 128, rec_widths=(16, 32, 64, 64), seg_widths=(16, 32, 64, 64)),
}


def deepest_stride(cfg: ModelConfig) -> int:
    """How much the deepest encoder level is downsampled: 2 ** (levels - 1) (a 2x2 max-pool per level)."""
    return 2 ** (max(len(cfg.rec_widths), len(cfg.seg_widths)) - 1)


def min_train_size(cfg: ModelConfig, batch_size: int) -> int:
    """The smallest training size the network can run with `batch_size` images per step (and process): a
    multiple of `deepest_stride`, and BatchNorm in training mode needs more than one value per channel at
    the deepest level (batch x side x side > 1)."""
    stride, side = deepest_stride(cfg), 1
    while batch_size * side * side < 2:
        side += 1
    return stride * side


def size_fits(cfg: ModelConfig) -> bool:
    """Whether `cfg.size` is a positive multiple of the network's deepest stride (what it can run at all)."""
    return cfg.size > 0 and cfg.size % deepest_stride(cfg) == 0


def make_config(preset: str = "base", size: int | None = None, arch: str = "paper",
                combine: str | None = None) -> ModelConfig:
    """A preset, optionally at another resolution (must be a positive multiple of the deepest stride), with
    the network `arch` (ARCHS) and, for a global one, how its branches combine (default DEFAULT_COMBINE).
    ValueError on an unknown preset, arch or combine or a size that does not fit."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    combine = combine or DEFAULT_COMBINE.get(arch, "seg")
    cfg = ModelConfig(cfg.preset, int(size) if size is not None else cfg.size, cfg.rec_widths, cfg.seg_widths,
                      arch, combine)
    if not size_fits(cfg):
        stride = deepest_stride(cfg)
        below = max(stride, cfg.size // stride * stride)
        raise ValueError(f"size {cfg.size} must be a multiple of {stride} for preset {preset!r} (its "
                         f"{stride}x downsampling); e.g. {below} or {below + stride}")
    return cfg


def check_trainable(cfg: ModelConfig, batch_size: int) -> None:
    """ValueError, with the smallest size that works, when the network cannot train at `cfg.size` with
    `batch_size` images per step."""
    smallest = min_train_size(cfg, batch_size)
    if cfg.size < smallest:
        side = cfg.size // deepest_stride(cfg)
        raise ValueError(f"preset {cfg.preset!r} at {cfg.size} px reaches {side}x{side} px at its deepest level, "
                         f"and BatchNorm cannot train on {batch_size * side * side} value(s) per channel: the "
                         f"smallest size that works with --batch-size {batch_size} is {smallest} "
                         f"(or use --batch-size {max(2, batch_size + 1)} or more)")


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cmid: int, cout: int) -> nn.Sequential:
    """2 x (conv3x3-BN-ReLU)."""
    return nn.Sequential(*_conv(cin, cmid), *_conv(cmid, cout))


def _up(cin: int, cout: int) -> nn.Sequential:
    """x2 bilinear upsampling (align_corners as DRAEM) then conv3x3-BN-ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *_conv(cin, cout))


def _decoder_widths(widths: tuple[int, ...]) -> list[int]:
    """Output widths of the decoder stages, deepest first: DRAEM's (8,8,4,2,1,1)*w pattern generalised."""
    return [widths[max(j - 1, 0)] for j in range(len(widths) - 2, -1, -1)]


class Encoder(nn.Module):
    """Blocks of 2 x conv with a 2x2 max-pool between them; returns every block's features."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        ins = (cin, *widths[:-1])
        self.blocks = nn.ModuleList(_block(i, w, w) for i, w in zip(ins, widths, strict=True))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class ReconstructionNet(nn.Module):
    """Encoder-decoder without skips and three heads: image (3, linear), JND (1, linear), edge (1, logits)."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.encoder = Encoder(3, widths)
        ups, blocks, c = [], [], widths[-1]
        for out in _decoder_widths(widths):
            ups.append(_up(c, c))
            blocks.append(_block(c, c, out))
            c = out
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.image_head = nn.Conv2d(c, 3, 3, padding=1)
        self.jnd_head = nn.Conv2d(c, 1, 3, padding=1)
        self.edge_head = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)[-1]
        for up, block in zip(self.ups, self.blocks, strict=True):
            h = block(up(h))
        return self.image_head(h), self.jnd_head(h), self.edge_head(h)


class SegmentationNet(nn.Module):
    """DRAEM's discriminative U-Net: encoder features joined to the decoder by skips; 2-class logits."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        self.encoder = Encoder(cin, widths)
        ups, blocks, c = [], [], widths[-1]
        skips = list(widths[-2::-1])
        for out, skip in zip(_decoder_widths(widths), skips, strict=True):
            ups.append(_up(c, out))
            blocks.append(_block(out + skip, out, out))
            c = out
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """2-class logits from the encoder's features (shallowest first; the deepest may be replaced)."""
        h = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, feats[-2::-1], strict=True):
            h = block(torch.cat((up(h), skip), dim=1))
        return self.head(h)


class LocalizationNet(nn.Module):
    """x (B, 3, H, W) in [0, 1] -> dict(image, jnd, edge (probability), edge_logits, seg (2-class logits));
    a global arch adds global_map (B, 2, H, W) 2-class logits (bilinear from the deepest level) and
    global_logit (B,) image-level logit."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.reconstruction = ReconstructionNet(config.rec_widths)
        self.segmentation = SegmentationNet(3 + 3 + 1 + 1, config.seg_widths)
        if config.arch in DESIGNS:
            self.global_branch = make_branch(config.arch, config.seg_widths[-1])
        self.composition: Composition | None = None   # fitted, not trained (arch "composition"; train.loop)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        image, jnd, edge_logits = self.reconstruction(x)
        edge = torch.sigmoid(edge_logits)
        out = {"image": image, "jnd": jnd, "edge": edge, "edge_logits": edge_logits}
        seg_in = torch.cat((x, image, jnd, edge), dim=1)
        if self.config.arch not in DESIGNS:
            return out | {"seg": self.segmentation(seg_in)}
        feats = self.segmentation.encoder(seg_in)
        deep, coarse, logit = self.global_branch(feats[-1])
        seg = self.segmentation.decode([*feats[:-1], deep])
        coarse = nn.functional.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out | {"seg": seg, "global_map": coarse, "global_logit": logit}

    def scored(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The final anomaly map (B, H, W) float32 probability in [0, 1] and, when `combine` uses it, the
        global image probability (B,) to average with the map's pooled max; else None. CheckpointError for a
        composition network that was never fitted."""
        out = self(x)
        if self.config.arch == "composition":
            if self.composition is None:
                raise CheckpointError("the composition branch is not fitted (train with --arch composition)")
            out |= self.composition.outputs(x)
        return combine_outputs(out, self.config.combine)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) probability of the anomaly class (the combined map for a global arch)."""
        return self.scored(x)[0]


def combine_outputs(out: dict[str, torch.Tensor], combine: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(map (B, H, W) float32 in [0, 1], image probability (B,) or None) from a forward's outputs as `combine`
    (COMBINES) says; KeyError when it needs the global branch's outputs and they are missing."""
    prob = torch.softmax(out["seg"].float(), dim=1)[:, 1]
    if combine.startswith(("mean", "max")):
        other = out["global_prob"] if "global_prob" in out else torch.softmax(out["global_map"].float(), dim=1)[:, 1]
        prob = 0.5 * (prob + other) if combine.startswith("mean") else torch.maximum(prob, other)
    image = None
    if combine.endswith("+logit"):
        image = out["global_image"] if "global_image" in out else torch.sigmoid(out["global_logit"].float())
    return prob, image


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(path: Path, model: nn.Module, config: ModelConfig, extra: dict | None = None) -> None:
    """Write weights + config (+ `extra`, e.g. optimizer/scheduler/step/rng for resume) atomically."""
    model = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "state_dict": state}
    if getattr(model, "composition", None) is not None:
        payload["composition"] = model.composition.state()
    save_torch(path, payload | (extra or {}))


def read_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict (weights_only load), checked for our format; CheckpointError otherwise."""
    payload = load_torch(path, f"{FORMAT} checkpoint", FORMAT, VERSION)
    if not isinstance(payload.get("state_dict"), dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: checkpoint lacks its weights or config")
    return payload


def model_from_payload(path: Path, payload: dict) -> tuple[LocalizationNet, ModelConfig]:
    """Rebuild the network of a checkpoint dict read by read_checkpoint."""
    try:
        config = ModelConfig.from_dict(payload["config"])
        if not size_fits(config):
            raise ValueError(f"its size {config.size} is not a multiple of {deepest_stride(config)}")
        model = LocalizationNet(config)
        model.load_state_dict(payload["state_dict"])
        if config.arch == "composition":
            if not isinstance(payload.get("composition"), dict):
                raise ValueError("a composition network without its fitted composition branch")
            model.composition = Composition.from_state(payload["composition"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({exc})") from None
    return model, config


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[LocalizationNet, dict]:
    """The trained network (eval mode, on `device`) and its config dict (preset, size, widths; arch and
    combine for a global one)."""
    payload = read_checkpoint(path)
    model, config = model_from_payload(path, payload)
    return model.to(device).eval(), config.to_dict()

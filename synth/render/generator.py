"""The edge-to-image generator (pix2pixHD global generator + multi-scale PatchGAN) and its frozen renderer.

Architecture follows NVIDIA/pix2pixHD: the generator maps a 1-channel edge map to RGB in [-1, 1]; the
discriminators see the edge map concatenated with an image and return every intermediate feature map so the
generator can be trained with feature matching. `load_generator` turns a checkpoint into a
`GeneratorRenderer`, the Renderer used by the synthesis pipeline, or for a checkpoint of the inpainting kind
(synth.render.inpaint: the same network conditioned on the image around a hole) an `InpaintRenderer`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from synth.errors import CheckpointError, LogicalError
from synth.store.checkpoint import load_torch, save_torch

FORMAT = "logical-generator"


VERSION = 1


# What a checkpoint renders from: "global" paints the whole image from the edge map (the paper's pix2pixHD),
# "inpaint" repaints a hole of the normal image from its surroundings and the edges (synth.render.inpaint).
# A checkpoint without a kind predates the inpainting kind and is global.
KINDS = ("global", "inpaint")
IN_CH = 5  # the inpainting kind's input: image (3, blanked in the hole) + hole (1) + edges (1)


@dataclass(frozen=True)
class GeneratorConfig:
    """Network shape: generator (ngf, n_down, n_blocks), discriminator (ndf, n_layers_d, num_d), `size` px."""

    in_ch: int = 1
    out_ch: int = 3
    ngf: int = 64
    n_down: int = 3
    n_blocks: int = 9
    size: int = 256
    ndf: int = 64
    n_layers_d: int = 3
    num_d: int = 2

    def __post_init__(self) -> None:
        stride = 2 ** self.n_down
        if self.size % stride:
            below = max(2 * stride, self.size // stride * stride)
            raise ValueError(f"size {self.size} must be divisible by 2**n_down = {stride}, e.g. {below} or "
                             f"{below + stride}")
        if self.size < 2 * stride:      # instance norm needs more than one value per channel at the bottleneck
            raise ValueError(f"size {self.size} is too small: {self.n_down} downsamplings leave "
                             f"{self.size // stride} px, the smallest size that works is {2 * stride}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown generator config keys {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, GeneratorConfig] = {
    # CPU demo: fits on ~60 toybox images in a few minutes on 2 cores.
    "tiny": GeneratorConfig(ngf=16, n_down=2, n_blocks=3, size=128, ndf=16, n_layers_d=3, num_d=2),
    # The paper's setting for one category at 256 px (pix2pixHD global generator, 3 downsamples, 9 blocks).
    "base": GeneratorConfig(ngf=64, n_down=3, n_blocks=9, size=256, ndf=64, n_layers_d=3, num_d=2),
}


def config_for(preset: str, size: int | None = None) -> GeneratorConfig:
    """The preset's config, at another image size when `size` is given."""
    if preset not in PRESETS:
        raise LogicalError(f"--preset {preset}: unknown generator preset (choose from {', '.join(PRESETS)})")
    config = PRESETS[preset]
    if size is None or size == config.size:
        return config
    try:
        return replace(config, size=int(size))
    except ValueError as exc:
        raise LogicalError(f"--size {size}: {exc} for preset {preset}") from None


def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=False)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convs with instance norm, added to the input."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator: 7x7 stem, stride-2 downs, residual blocks, transposed-conv ups, tanh."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        ngf = config.ngf
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(config.in_ch, ngf, 7), _norm(ngf),
                                   nn.ReLU(True)]
        for i in range(config.n_down):
            ch = ngf * 2 ** i
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _norm(ch * 2), nn.ReLU(True)]
        ch = ngf * 2 ** config.n_down
        layers += [ResnetBlock(ch) for _ in range(config.n_blocks)]
        for i in range(config.n_down):
            ch = ngf * 2 ** (config.n_down - i)
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(ch // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config.out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        return self.model(edges)


class NLayerDiscriminator(nn.Module):
    """PatchGAN with 4x4 convs; returns the output of every layer group (the last one is the patch score)."""

    def __init__(self, in_ch: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        groups = [nn.Sequential(nn.Conv2d(in_ch, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            groups.append(nn.Sequential(nn.Conv2d(prev, nf, 4, stride=stride, padding=2), _norm(nf),
                                        nn.LeakyReLU(0.2)))
        groups.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=2)))
        self.groups = nn.ModuleList(groups)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for group in self.groups:
            x = group(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs on (edge, image) pairs, each next one on a 3x3/2 average-pooled copy of the input."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        in_ch = config.in_ch + config.out_ch
        self.scales = nn.ModuleList(NLayerDiscriminator(in_ch, config.ndf, config.n_layers_d)
                                    for _ in range(config.num_d))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, edges: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([edges, image], dim=1)
        out = []
        for i, disc in enumerate(self.scales):
            out.append(disc(x))
            if i + 1 < len(self.scales):
                x = self.down(x)
        return out


def init_weights(module: nn.Module) -> None:
    """pix2pixHD init: conv weights N(0, 0.02) (instance norm has no affine parameters)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)


def resolve_device(device: str) -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA without one is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise LogicalError(f"--device {device}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise LogicalError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(device)


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically (temporary file in the same folder, fsync, rename): no half-written file."""
    save_torch(path, payload)


def read_checkpoint(path: Path) -> dict:
    """Load and validate a generator checkpoint (weights_only); CheckpointError names the file and problem."""
    ckpt = load_torch(path, "logical generator checkpoint", FORMAT, VERSION,
                      hint="make one with `logical-synth fit-generator`")
    return check_payload(path, ckpt)


def check_payload(path: Path, ckpt: dict) -> dict:
    """`ckpt` with its config as a GeneratorConfig, once it has the keys a generator needs and its size
    agrees with the config; CheckpointError naming `path` otherwise."""
    for key in ("config", "edges", "size", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: generator checkpoint lacks {key!r}")
    ckpt["kind"] = str(ckpt.get("kind", "global"))
    if ckpt["kind"] not in KINDS:
        raise CheckpointError(f"{path}: unknown generator kind {ckpt['kind']!r} (this version knows "
                              f"{', '.join(KINDS)})")
    try:
        ckpt["config"] = GeneratorConfig.from_dict(dict(ckpt["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad generator config ({exc})") from None
    if int(ckpt["size"]) != ckpt["config"].size:
        raise CheckpointError(f"{path}: size {ckpt['size']} disagrees with its config "
                              f"({ckpt['config'].size})")
    if (ckpt["config"].in_ch == IN_CH) != (ckpt["kind"] == "inpaint"):
        raise CheckpointError(f"{path}: a {ckpt['kind']} generator with {ckpt['config'].in_ch} input "
                              "channel(s) is inconsistent")
    return ckpt


def check_compatible(path: Path, ckpt: dict, edges: str | None, size: int | None) -> None:
    """Refuse a checkpoint fitted on other edges or at another size than the caller will feed it."""
    have = str(ckpt["edges"])
    if edges is not None:
        same = have == edges if "-" in edges else have.split("-", 1)[0] == edges
        if not same:
            name = edges.split("-", 1)[0]
            asked = name if name == edges else f"{name} ({edges})"
            other = have.split("-", 1)[0]
            # same extractor name, other version: only a refit helps (the old version is not selectable)
            instead = (f"the {name} extractor has changed since" if other == name
                       else f"or use --edges {other}")
            raise CheckpointError(
                f"{path} was fitted on {have} edges, but --edges {asked} was asked: refit with "
                f"`logical-synth fit-generator --edges {name} --out {path}` ({instead})")
    if size is not None and int(size) != int(ckpt["size"]):
        raise CheckpointError(
            f"{path} was fitted at {ckpt['size']} px, but --size {size} was asked: refit with "
            f"`logical-synth fit-generator --size {size} --out {path}` or use --size {ckpt['size']}")


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    interp = cv2.INTER_AREA if w < arr.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(arr, (w, h), interpolation=interp)


class GeneratorRenderer:
    """A frozen global generator as a Renderer: edge maps (B,H,W) float [0,1] -> images (B,H,W,3) uint8.

    `bf16`: run the network under bfloat16 autocast (default: on CUDA; float32 on the CPU). Forcing it either
    way measures what bf16 changes in the renders (benchmarks/gpu_check.py).
    """

    kind = "global"

    def __init__(self, model: GlobalGenerator, config: GeneratorConfig, edges_identity: str,
                 identity: str = "generator-unsaved", quality: dict | None = None,
                 device: torch.device | str = "cpu", max_batch: int = 16, bf16: bool | None = None) -> None:
        self.device = torch.device(device)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bool(bf16)
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = config
        self.edges_identity = edges_identity
        self.identity = identity
        self.quality = quality or {}
        self.max_batch = max_batch

    def render(self, edges: np.ndarray, normals: np.ndarray | None = None,
               holes: np.ndarray | None = None) -> np.ndarray:
        """Render each edge map; `normals` and `holes` are accepted for the Renderer protocol and ignored."""
        edges = np.asarray(edges, dtype=np.float32)
        if edges.ndim != 3:
            raise ValueError(f"edges must be (B,H,W), got shape {edges.shape}")
        b, h, w = edges.shape
        size = self.config.size
        out = np.empty((b, h, w, 3), np.uint8)
        for start in range(0, b, self.max_batch):
            chunk = edges[start:start + self.max_batch]
            if (h, w) != (size, size):
                chunk = np.stack([_resize(e, size, size) for e in chunk])
            images = self._forward(chunk)
            if (h, w) != (size, size):
                images = np.stack([_resize(im, w, h) for im in images])
            out[start:start + len(chunk)] = images
        return out

    def _forward(self, edges: np.ndarray) -> np.ndarray:
        return self._run(torch.from_numpy(np.ascontiguousarray(np.clip(edges, 0.0, 1.0)))[:, None])

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> np.ndarray:
        """The network on a (B, in_ch, H, W) input -> (B, H, W, 3) uint8 images."""
        x = x.to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.model(x)
        y = ((y.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

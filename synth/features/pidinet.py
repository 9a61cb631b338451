"""PiDiNet edge detector (Su et al., "Pixel Difference Networks for Efficient Edge Detection", ICCV 2021).

Written from the paper and the layer definitions of the official code (hellozhuo/pidinet) so that the
official BSDS checkpoint `table5_pidinet.pth` (carv4 layout, 60 channels, CDCM with 24 channels + CSAM side
branches) loads strictly from a local path. The checkpoint holds the raw pixel-difference weights; for
inference every pixel-difference convolution is folded into an equivalent plain convolution (central: 3x3,
angular: 3x3, radial: 5x5), which gives the same output and runs as fast as a vanilla CNN. Nothing is ever
downloaded.
"""

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synth.errors import CheckpointError
from synth.store.atomic import sha256_file
from synth.store.checkpoint import load_torch

CARV4 = ("cd", "ad", "rd", "cv") * 4  # op of each of the 16 pixel-difference layers (init block + 15 blocks)
PARAMETER_COUNT = 710_149  # table5_pidinet: PiDiNet(60, carv4, dil=24, sa=True)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Angular difference: tap i is compared with its clockwise neighbour on the 3x3 ring (row-major indices).
_AD_PERMUTATION = (3, 0, 1, 6, 4, 2, 7, 8, 5)
_AD_PARTNER = tuple(_AD_PERMUTATION.index(j) for j in range(9))  # x_j is compared with x_partner[j]
# Radial difference: taps 1..8 of the 3x3 kernel weigh (outer ring pixel - inner ring pixel) of a 5x5 window.
_RD_OUTER = (0, 2, 4, 10, 14, 20, 22, 24)
_RD_INNER = (6, 7, 8, 11, 13, 16, 17, 18)


def fold_weight(op: str, weight: torch.Tensor) -> torch.Tensor:
    """The plain-convolution kernel equivalent to pixel-difference op `op` with raw 3x3 `weight`."""
    out, cin = weight.shape[:2]
    flat = weight.reshape(out, cin, 9)
    if op == "cv":
        return weight.clone()
    if op == "cd":  # sum_i w_i (x_i - x_centre): the centre tap loses the sum of all taps
        folded = flat.clone()
        folded[:, :, 4] = folded[:, :, 4] - flat.sum(dim=2)
        return folded.reshape(weight.shape)
    if op == "ad":
        return (flat - flat[:, :, list(_AD_PERMUTATION)]).reshape(weight.shape)
    if op == "rd":
        ring = torch.zeros(out, cin, 25, dtype=weight.dtype, device=weight.device)
        ring[:, :, list(_RD_OUTER)] = flat[:, :, 1:]
        ring[:, :, list(_RD_INNER)] = -flat[:, :, 1:]
        return ring.reshape(out, cin, 5, 5)
    raise ValueError(f"unknown pixel-difference op {op!r}")


class PixelDifferenceConv(nn.Module):
    """3x3 convolution over pixel differences (raw form, as trained): cd central, ad angular, rd radial.

    The forward pass forms the differences explicitly (paper, Eq. 2 and Fig. 3), which makes it an independent
    check of `fold_weight`.
    """

    def __init__(self, op: str, in_channels: int, out_channels: int, groups: int = 1) -> None:
        super().__init__()
        if op not in ("cd", "ad", "rd", "cv"):
            raise ValueError(f"unknown pixel-difference op {op!r}")
        self.op, self.groups = op, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "cv":
            return F.conv2d(x, self.weight, padding=1, groups=self.groups)
        b, c, h, w = x.shape
        if self.op == "rd":
            taps = F.unfold(x, 5, padding=2).view(b, c, 25, h * w)
            diffs = taps[:, :, list(_RD_OUTER)] - taps[:, :, list(_RD_INNER)]
            weight = self.weight.reshape(self.weight.shape[0], -1, 9)[:, :, 1:]
        else:
            taps = F.unfold(x, 3, padding=1).view(b, c, 9, h * w)
            partner = [4] * 9 if self.op == "cd" else list(_AD_PARTNER)
            diffs = taps - taps[:, :, partner]
            weight = self.weight.reshape(self.weight.shape[0], -1, 9)
        k = diffs.shape[2]
        g = self.groups
        diffs = diffs.reshape(b, g, (c // g) * k, h * w)
        weight = weight.reshape(g, -1, (c // g) * k)
        return torch.einsum("gok,bgkp->bgop", weight, diffs).reshape(b, -1, h, w)

    def folded(self) -> nn.Conv2d:
        """An nn.Conv2d computing the same function."""
        kernel = fold_weight(self.op, self.weight.detach())
        size = kernel.shape[-1]
        conv = nn.Conv2d(kernel.shape[1] * self.groups, kernel.shape[0], size, padding=size // 2,
                         groups=self.groups, bias=False)
        conv.weight.data.copy_(kernel)
        return conv


class PDCBlock(nn.Module):
    """Residual block: [max-pool + 1x1 shortcut if striding] depthwise PDC -> ReLU -> 1x1 conv, plus input."""

    def __init__(self, op: str, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.conv1 = PixelDifferenceConv(op, in_channels, in_channels, groups=in_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = self.pool(x)
        y = self.conv2(self.relu2(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class CDCM(nn.Module):
    """Compact dilation convolution module: 1x1 reduction, four dilated 3x3 convs (5, 7, 9, 11) summed."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        for i, d in enumerate((5, 7, 9, 11), start=1):
            conv = nn.Conv2d(out_channels, out_channels, 3, dilation=d, padding=d, bias=False)
            setattr(self, f"conv2_{i}", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class CSAM(nn.Module):
    """Compact spatial attention module: x * sigmoid(3x3(1x1(relu(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(channels, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.conv2(self.conv1(self.relu1(x))))


class MapReduce(nn.Module):
    """1x1 convolution to one side-output channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):
    """Four stages of PDC blocks (C, 2C, 4C, 4C channels), a CDCM + CSAM side branch per stage, fused output.

    forward(x) -> [e1, e2, e3, e4, fused], each a sigmoid map (B, 1, H, W); x is ImageNet-normalised RGB.
    """

    def __init__(self, channels: int = 60, ops: tuple[str, ...] = CARV4, dil: int = 24) -> None:
        super().__init__()
        c = channels
        self.init_block = PixelDifferenceConv(ops[0], 3, c)
        widths = (c, 2 * c, 4 * c, 4 * c)  # stage s: block{s}_1.. ; the first block of stages 2-4 strides
        stages, index, cin = [], 1, c
        for s, (width, depth) in enumerate(zip(widths, (3, 4, 4, 4), strict=True), start=1):
            names = []
            for b in range(1, depth + 1):
                name = f"block{s}_{b}"
                stride = 2 if s > 1 and b == 1 else 1
                setattr(self, name, PDCBlock(ops[index], cin, width, stride))
                names.append(name)
                index, cin = index + 1, width
            stages.append(tuple(names))
        self.stages = tuple(stages)
        self.dilations = nn.ModuleList(CDCM(w, dil) for w in widths)
        self.attentions = nn.ModuleList(CSAM(dil) for _ in widths)
        self.conv_reduces = nn.ModuleList(MapReduce(dil) for _ in widths)
        self.classifier = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[2:]
        x = self.init_block(x)
        sides = []
        for i, stage in enumerate(self.stages):
            for name in stage:
                x = getattr(self, name)(x)
            side = self.conv_reduces[i](self.attentions[i](self.dilations[i](x)))
            sides.append(F.interpolate(side, (h, w), mode="bilinear", align_corners=False))
        fused = self.classifier(torch.cat(sides, dim=1))
        return [torch.sigmoid(s) for s in (*sides, fused)]

    def folded(self) -> "PiDiNet":
        """A copy with every pixel-difference convolution replaced by its equivalent plain convolution."""
        net = copy.deepcopy(self)
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, PixelDifferenceConv):
                    setattr(module, name, child.folded())
        return net


def load_pidinet(path: Path) -> PiDiNet:
    """The raw (pixel-difference) PiDiNet with the official checkpoint at `path` loaded strictly."""
    checkpoint = load_torch(path, "PiDiNet weights file")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no PiDiNet state_dict in the checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = PiDiNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problems = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                    for label, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{path}: not the table5_pidinet checkpoint (PiDiNet carv4, 60 channels, "
                              f"dil 24, attention); {'; '.join(problems)}")
    net.load_state_dict(state, strict=True)
    return net.eval()


def _auto_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class PiDiNetEdges:
    """EdgeExtractor backed by the official PiDiNet weights: the fused output, float32 (H, W) in [0, 1].

    The map is PiDiNet's edge probability as the network gives it (a few pixels wide, no thinning), which is
    what LogicAL feeds its generator.
    """

    def __init__(self, weights: Path, device: str = "auto", batch_size: int = 8, bf16: bool = False) -> None:
        weights = Path(weights)
        self.net = load_pidinet(weights).folded()
        self.identity = f"pidinet-{sha256_file(weights)[:12]}"
        self.device = _auto_device(device)
        self.net.to(self.device).eval()
        self.batch_size = batch_size
        self.bf16 = bf16 and self.device.type == "cuda"
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def _run(self, stack: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(stack).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self._mean) / self._std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            fused = self.net(x)[-1]
        return fused[:, 0].float().clamp_(0, 1).cpu().numpy()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.batch([rgb])[0]

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Edge maps of RGB uint8 images; images of equal size share forward passes of up to `batch_size`."""
        out: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
            by_shape.setdefault(img.shape, []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                maps = self._run(np.stack([images[i] for i in chunk]))
                for i, m in zip(chunk, maps, strict=True):
                    out[i] = np.ascontiguousarray(m, dtype=np.float32)
        return out  # type: ignore[return-value]

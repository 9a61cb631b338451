"""Global branches: modules that see the whole image at the segmentation U-Net's deepest level.

The paper's network judges each pixel from its neighbourhood, so it cannot count parts or compare one part
with another far away (issue 24: on toybox `bag` such models score logical images at chance). A global
branch sits between the segmentation encoder and its decoder: it takes the deepest features (B, C, h, w),
returns features of the same shape that carry whole-image context (fed to the decoder in their place), a
coarse 2-class map (B, 2, h, w) of where the rule breaks, and an image-level logit (B,) "this image is
anomalous". Two designs:

- `bottleneck`: the deepest features squeezed through a small vector (adaptive-pooled to 4 x 4, then one
  linear layer) and expanded back, as EfficientAD's global autoencoder (Batzner et al., WACV 2024) whose
  bottleneck sees the whole image; the expansion is concatenated to the features and fused (1 x 1 conv).
- `attention`: self-attention over the deepest features as tokens (pre-norm transformer encoder layers with
  fixed 2-D sinusoidal positions), so every place can compare itself with every other (ViT, Dosovitskiy et
  al., ICLR 2021; attention at a U-Net's bottleneck as TransUNet, Chen et al., 2021).
"""

import math

import torch
from torch import nn

DESIGNS = ("bottleneck", "attention")


def sinusoidal_positions(channels: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """(h * w, channels) float32 fixed 2-D sine/cosine position codes (half the channels per axis, the
    Transformer's frequencies); channels must be a multiple of 4 (ValueError)."""
    if channels % 4:
        raise ValueError(f"sinusoidal positions need channels divisible by 4, got {channels}")
    quarter = channels // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (ys.reshape(-1, 1), xs.reshape(-1, 1)):
        angle = coord * freq
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1)


class _Heads(nn.Module):
    """The coarse 2-class map (1 x 1 conv) and the image logit (linear on mean- and max-pooled features)."""

    def __init__(self, channels: int):
        super().__init__()
        self.map_head = nn.Conv2d(channels, 2, 1)
        self.logit_head = nn.Linear(2 * channels, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat((h.mean(dim=(2, 3)), h.amax(dim=(2, 3))), dim=1)
        return self.map_head(h), self.logit_head(pooled)[:, 0]


class BottleneckBranch(nn.Module):
    """Whole-image vector (C x 4 x 4 -> `dim`) expanded back and fused with the deepest features."""

    GRID = 4

    def __init__(self, channels: int, dim: int = 128):
        super().__init__()
        g = self.GRID
        self.pool = nn.AdaptiveAvgPool2d(g)
        self.squeeze = nn.Sequential(nn.Flatten(), nn.Linear(channels * g * g, dim), nn.ReLU(inplace=True))
        self.expand = nn.Sequential(nn.Linear(dim, channels * g * g), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))
        self.heads = _Heads(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        code = self.expand(self.squeeze(self.pool(x))).view(b, c, self.GRID, self.GRID)
        context = nn.functional.interpolate(code, size=(h, w), mode="bilinear", align_corners=False)
        out = self.fuse(torch.cat((x, context.to(x.dtype)), dim=1))
        return (out, *self.heads(out))


class AttentionBranch(nn.Module):
    """`layers` pre-norm transformer encoder layers over the h x w deepest features as tokens."""

    def __init__(self, channels: int, layers: int = 2, heads: int = 4):
        super().__init__()
        if channels % 4:
            raise ValueError(f"the attention branch needs deepest widths divisible by 4, got {channels}")
        heads = heads if channels % heads == 0 else 1
        layer = nn.TransformerEncoderLayer(channels, heads, dim_feedforward=2 * channels, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.heads = _Heads(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + sinusoidal_positions(c, h, w, x.device).to(tokens.dtype)
        out = self.encoder(tokens).transpose(1, 2).reshape(b, c, h, w)
        return (out, *self.heads(out))


def make_branch(design: str, channels: int) -> nn.Module:
    """The global branch `design` (one of DESIGNS) for deepest features of `channels` channels."""
    if design == "bottleneck":
        return BottleneckBranch(channels)
    if design == "attention":
        return AttentionBranch(channels)
    raise ValueError(f"unknown global branch {design!r}; choose from {', '.join(DESIGNS)}")

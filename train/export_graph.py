"""The whole inference of a checkpoint as one module, for export to ONNX / OpenVINO.

uint8 RGB images (B, H, W, 3), any batch and size -> resize to the model's S x S as `synth.datasets.images.resize_rgb`
does (OpenCV's area averaging when shrinking, bilinear with half-pixel centres when enlarging, rounded to
uint8), scale to [0, 1], the network, softmax, DRAEM's pooled image score (train.evaluate), and the calibrated
thresholds (train.thresholds): outputs `map` (B, S, S) float32, `score` (B,) float32, `decision` (B,) bool
(True = NG) and `mask` (B, S, S) uint8 (1 = defect pixel of an NG image). The resize is written as two
matrix products with weights computed from H and W inside the graph, so the graph keeps H and W dynamic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.evaluate import pool_kernel

INPUT = "images"
OUTPUTS = ("map", "score", "decision", "mask")


def resize_weights(n: int | torch.SymInt, size: int, shrink: torch.Tensor) -> torch.Tensor:
    """(size, n) float32 weights resizing an axis of length n to `size`: area overlap when shrinking
    (cv2.INTER_AREA), else linear interpolation with half-pixel centres (cv2.INTER_LINEAR, clamped)."""
    j = torch.arange(n).to(torch.float32).unsqueeze(0)
    nf = j.new_full((), 1.0) * n
    scale = nf / size
    i = torch.arange(size, dtype=torch.float32).unsqueeze(1)
    area = torch.clamp(torch.minimum(j + 1, (i + 1) * scale) - torch.maximum(j, i * scale), min=0) / scale
    src = torch.minimum(torch.clamp((i + 0.5) * scale - 0.5, min=0), nf - 1)
    linear = torch.relu(1 - torch.abs(j - src))
    return torch.where(shrink, area, linear)


class InferenceGraph(nn.Module):
    """A LocalizationNet with its preprocessing, score pooling and thresholds (module doc)."""

    def __init__(self, model: nn.Module, size: int, image_threshold: float, pixel_threshold: float):
        super().__init__()
        self.model, self.size, self.kernel = model.eval(), int(size), pool_kernel(int(size))
        self.register_buffer("image_threshold", torch.tensor(float(image_threshold), dtype=torch.float32))
        self.register_buffer("pixel_threshold", torch.tensor(float(pixel_threshold), dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        h, w = x.shape[2], x.shape[3]
        shrink = (w > self.size) & torch.ones((), dtype=torch.bool)    # cv2.resize picks by width alone
        ry, rx = resize_weights(h, self.size, shrink), resize_weights(w, self.size, shrink)
        x = torch.matmul(torch.matmul(ry, x), rx.transpose(0, 1))
        x = torch.round(torch.clamp(x, 0, 255)) / 255.0
        prob, image = self.model.scored(x)    # the arch's own map (and image probability), as train.evaluate.infer
        pooled = F.avg_pool2d(prob.unsqueeze(1), self.kernel, stride=1, padding=self.kernel // 2)
        score = pooled.flatten(1).amax(dim=1)
        if image is not None:
            score = 0.5 * (score + image)
        decision = score > self.image_threshold
        mask = ((prob > self.pixel_threshold) & decision[:, None, None]).to(torch.uint8)
        return prob, score, decision, mask

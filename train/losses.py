"""Training losses: SSIM, PiDiNet's annotator-robust edge loss, focal loss, and LogicAL's total.

All losses compute in float32 (inputs are cast), so they are safe to call on bf16 autocast outputs.
"""

import torch
import torch.nn.functional as F

# the differentiable SSIM lives in synth.ssim, shared with the generator's fitting; re-exported here
from synth.ssim import UNIT_C1 as SSIM_C1  # noqa: F401
from synth.ssim import ssim_map_torch as ssim_map


def ssim(a: torch.Tensor, b: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Mean SSIM over pixels, channels and the batch (a scalar tensor)."""
    return ssim_map(a, b, padding=padding).mean()


def ssim_loss(a: torch.Tensor, b: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """1 - SSIM: 0 for identical images."""
    return 1.0 - ssim(a, b, padding=padding)


def edge_weights(
    target: torch.Tensor, eta: float = 0.3, alpha: float = 1.0, beta: float = 1.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights and binary labels of PiDiNet's loss, class balance counted per image.

    Target y in [0, 1]: y == 0 negative, y >= eta positive, 0 < y < eta ignored (weight 0).
    Positives weigh alpha * |neg| / (|pos| + |neg|), negatives beta * |pos| / (|pos| + |neg|)
    (official hellozhuo/pidinet utils.cross_entropy_loss_RCF, lambda = beta = 1.1).
    """
    target = target.float()
    pos = target >= eta
    neg = target <= 0
    dims = tuple(range(1, target.dim()))
    n_pos = pos.sum(dim=dims, keepdim=True).float()
    n_neg = neg.sum(dim=dims, keepdim=True).float()
    total = (n_pos + n_neg).clamp_min(1.0)
    weights = pos * (alpha * n_neg / total) + neg * (beta * n_pos / total)
    return weights, pos.float()


def edge_loss(
    logits: torch.Tensor, target: torch.Tensor, eta: float = 0.3, alpha: float = 1.0, beta: float = 1.1
) -> torch.Tensor:
    """Annotator-robust weighted BCE (PiDiNet) on edge logits, normalised by the sum of the weights.

    The official code returns the weighted *sum*, which grows with the image size; dividing by the total
    weight makes it a weighted mean BCE (about 0.69 for an untrained head) that balances with the other
    O(1) losses. An image without positive pixels has all weights 0 and contributes nothing, as officially.
    """
    weights, labels = edge_weights(target, eta, alpha, beta)
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (weights * bce).sum() / weights.sum().clamp_min(1e-12)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss -(1 - p_t)^gamma log p_t of 2-class logits (B, 2, H, W) against a {0, 1} mask.

    The mask may be (B, H, W) or (B, 1, H, W). gamma = 0 is the plain cross-entropy.
    """
    if target.dim() == logits.dim():
        target = target[:, 0]
    logp = F.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    return (-((1.0 - p_t) ** gamma) * logp_t).mean()


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE + (1 - SSIM), LogicAL's L_img (and, on JND maps, L_jnd)."""
    pred = pred.float()
    return F.mse_loss(pred, target.float()) + ssim_loss(pred, target)


def global_loss(out: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The global branch's L_global: focal loss of its map against the mask plus BCE of its image logit
    against "the mask marks something" (the same synthetic labels as L_seg; issue 24)."""
    label = (mask.flatten(1).amax(dim=1) > 0).float()
    return (focal_loss(out["global_map"], mask)
            + F.binary_cross_entropy_with_logits(out["global_logit"].float(), label))


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L = L_img + L_jnd + L_edge + L_seg (+ L_global for a global arch) for one batch; returns every term
    and `total`.

    `out` is the model's output (image, jnd, edge_logits, seg; global_map and global_logit when the network
    has a global branch); `batch` the loader's (normal, jnd, edge, mask): the reconstruction heads aim at the
    *normal* image's picture, JND map and edge map.
    Samples whose `has_normal` (optional, (B,)) is 0 have no true normal (imports without one): see
    `_without_normals`.
    """
    keep = batch.get("has_normal")
    if keep is not None and not bool((keep > 0).all()):
        return _without_normals(out, batch, keep > 0)
    terms = {
        "img": reconstruction_loss(out["image"], batch["normal"]),
        "jnd": reconstruction_loss(out["jnd"], batch["jnd"]),
        "edge": edge_loss(out["edge_logits"], batch["edge"]),
        "seg": focal_loss(out["seg"], batch["mask"]),
    }
    if "global_map" in out:
        terms["global"] = global_loss(out, batch["mask"])
    terms["total"] = sum(terms.values())
    return terms


def _without_normals(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                     keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """`total_loss` where some samples have no true normal image (bool `keep` (B,) False): the three
    reconstruction terms (img, jnd, edge: all aim at the normal's maps) are computed over the kept samples
    only and scaled by their share of the batch, so a sample without a normal adds exactly 0 to them (and
    a batch of such samples gives 0); segmentation sees every sample."""
    share = keep.float().mean()
    zero = out["seg"].sum().float() * 0.0          # a 0 that keeps the graph (and the device)
    terms = {"img": zero, "jnd": zero, "edge": zero} if not bool(keep.any()) else {
        "img": share * reconstruction_loss(out["image"][keep], batch["normal"][keep]),
        "jnd": share * reconstruction_loss(out["jnd"][keep], batch["jnd"][keep]),
        "edge": share * edge_loss(out["edge_logits"][keep], batch["edge"][keep]),
    }
    terms["seg"] = focal_loss(out["seg"], batch["mask"])
    if "global_map" in out:     # the global branch, like segmentation, learns from every sample's mask
        terms["global"] = global_loss(out, batch["mask"])
    terms["total"] = sum(terms.values())
    return terms

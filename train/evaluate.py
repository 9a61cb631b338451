"""Run a checkpoint on a dataset's real test split and score it: metrics.json, metrics.md, heatmap PNGs.

Protocol (method.md "Evaluation"): every test image is resized to the model's square training size; the
anomaly map is the softmax anomaly channel at that resolution, resized bilinearly to each ground truth's
full size (the ground truth itself is never resized). The image score is DRAEM's: the max of the map after
a k x k average pool (zero padding, stride 1) at model resolution, k = 21 at 256 px scaled with the model
size (odd, e.g. 11 at 128). MVTec LOCO layouts get AU-sPRO (FPR 0.05) and image AUROC for logical and
structural anomalies (each with all good images) and their mean; other layouts get image AUROC, pixel
AUROC, pixel AP and AUPRO (FPR 0.3) over all test items. A checkpoint with a global branch (arch attention or
bottleneck) makes its map and score as its `combine` says (train.model.combine_outputs): the map may be the mean of
the U-Net's and the branch's, the score the mean of the pooled max and the branch's image probability.
"""

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from synth.console import progress, say
from synth.datasets import TestItem, open_dataset
from synth.datasets.bitdepth import data_depth
from synth.datasets.images import load_rgb, resize_rgb, save_image
from synth.errors import DatasetError, LogicalError
from train import metrics
from train.model import model_from_payload, read_checkpoint
from train.outputs import colour_overlay, upsample_map
from train.thresholds import decision_report, decision_table

DRAEM_POOL = 21          # DRAEM's average-pool kernel for the image score, at 256 px
AUPRO_MAX_FPR = 0.3
AU_SPRO_MAX_FPR = 0.05
PANEL_HEIGHT = 256       # height of each panel of a heatmap PNG


# --- inference (shared with predict) ---------------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else must be a torch device that exists here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def pool_kernel(size: int) -> int:
    """DRAEM's 21 x 21 image-score pool scaled to a model of `size` px, kept odd and at least 1."""
    k = max(1, round(DRAEM_POOL * size / 256))
    return k if k % 2 else k + 1


@torch.inference_mode()
def infer(model: torch.nn.Module, images: Sequence[np.ndarray], size: int,
          device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps (B, size, size) float32 in [0, 1] and image scores (B,) for RGB uint8 images; `model`
    is a LocalizationNet (its `scored`: the map and, for a global arch that uses it, an image probability
    averaged with the pooled max)."""
    batch = np.stack([resize_rgb(img, size) for img in images])
    x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    prob, image = model.scored(x)
    k = pool_kernel(size)
    score = F.avg_pool2d(prob[:, None], k, stride=1, padding=k // 2).amax(dim=(1, 2, 3))
    if image is not None:   # a global arch whose `combine` adds its image probability
        score = 0.5 * (score + image)
    return prob.cpu().numpy(), score.cpu().numpy()


def require_finite(checkpoint: Path, paths: Sequence[Path], maps: np.ndarray, scores: np.ndarray) -> None:
    """Stop (LogicalError naming the checkpoint and the first image) when the model's maps or scores hold
    NaN or infinity: those are no results, and no metric or scores.csv is written from them."""
    bad = [i for i in range(len(paths)) if not (np.isfinite(scores[i]) and np.isfinite(maps[i]).all())]
    if bad:
        raise LogicalError(f"{checkpoint}: the model's anomaly map is not finite (NaN or infinity) for "
                           f"{paths[bad[0]]}" + (f" and {len(bad) - 1} more image(s)" if len(bad) > 1 else "")
                           + "; its weights overflow on this input: retrain or use an earlier checkpoint")


def batches(items: Sequence, batch_size: int, desc: str) -> Iterator[list]:
    """Consecutive chunks of `items`, with a progress bar counting single items."""
    chunk: list = []
    for item in progress(items, desc, total=len(items)):
        chunk.append(item)
        if len(chunk) == batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- evaluation ------------------------------------------------------------------------------------------

class _Lazy(Sequence):
    """A read-only sequence computed on access (full-resolution maps and masks are made one at a time)."""

    def __init__(self, n: int, get: Callable[[int], object]):
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        return self._get(i)


def _channels(item: TestItem, shape: tuple[int, int]) -> list[metrics.Channel]:
    out = []
    for region, mask in zip(item.regions, item.region_masks(shape), strict=True):
        area = int(mask.sum())
        sat = metrics.saturation_area(area, region.saturation_threshold, region.relative_saturation)
        out.append((mask, sat))
    return out


def _loco_metrics(items, scores, labels, maps, shapes) -> dict:
    goods = [i for i, it in enumerate(items) if it.label == 0]
    out: dict = {}
    for kind in ("logical", "structural"):
        bad = [i for i, it in enumerate(items) if it.label == 1 and it.kind == kind]
        if not bad:
            continue
        sel = goods + bad
        sel_maps = _Lazy(len(sel), lambda j, sel=sel: maps[sel[j]])
        chans = _Lazy(len(sel), lambda j, sel=sel: _channels(items[sel[j]], shapes[sel[j]]))
        out[kind] = {
            "images": len(bad), "good": len(goods),
            "image_auroc": metrics.image_auroc(scores[sel], labels[sel]),
            "au_spro": metrics.au_spro(sel_maps, chans, AU_SPRO_MAX_FPR),
        }
    if "logical" in out and "structural" in out:
        out["mean"] = {key: (out["logical"][key] + out["structural"][key]) / 2
                       for key in ("image_auroc", "au_spro")}
    return out


def _plain_metrics(items, scores, labels, maps, shapes) -> dict:
    masks = _Lazy(len(items), lambda i: items[i].mask(shapes[i]))
    result: dict = {"images": len(items), "image_auroc": metrics.image_auroc(scores, labels)}
    if all(it.mask_path is not None for it in items if it.label == 1):
        auroc, ap = metrics.pixel_auroc_ap(maps, masks)
        result.update(pixel_auroc=auroc, pixel_ap=ap, aupro=metrics.aupro(maps, masks, AUPRO_MAX_FPR))
    else:
        say("some anomalous test images have no ground-truth mask: pixel metrics are left out")
        result.update(pixel_auroc=None, pixel_ap=None, aupro=None)
    out = {"all": result}
    goods = [i for i, it in enumerate(items) if it.label == 0]
    for split in sorted({it.split for it in items if it.label == 1}):
        bad = [i for i, it in enumerate(items) if it.split == split and it.label == 1]
        out[split] = {"images": len(bad), "image_auroc": metrics.image_auroc(scores[goods + bad],
                                                                             labels[goods + bad])}
    return out


def evaluate(checkpoint: Path, dataset: str, root: Path | None, category: str, out_dir: Path,
             device: str = "auto", batch_size: int = 8, n_heatmaps: int = 3) -> dict:
    """Score `checkpoint` on the test split of `dataset`/`category`; write metrics.json, metrics.md and
    heatmaps/ under out_dir; return the metrics.json content. With thresholds stored in the checkpoint
    (train.calibrate) `decisions` holds what they give (train.thresholds.decision_report), else None."""
    out_dir = Path(out_dir)
    reader = open_dataset(dataset, root)
    items = reader.test_items(category)
    if not items:
        raise DatasetError(f"{reader.root}: category {category!r} has no test images")
    for it in items:
        it.check_masks()        # before any work: a mask of another size must not be scored against
    bits = data_depth(reader.train_images(category)).bits     # the scale build used for this category
    dev = resolve_device(device)
    payload = read_checkpoint(Path(checkpoint))
    model, model_cfg = model_from_payload(Path(checkpoint), payload)
    model, config, thresholds = model.to(dev).eval(), model_cfg.to_dict(), payload.get("thresholds")
    size = int(config["size"])

    t0 = time.perf_counter()
    low: list[np.ndarray] = []
    scores_list: list[float] = []
    shapes: list[tuple[int, int]] = []
    for chunk in batches(items, batch_size, f"eval {category}"):
        images = [load_rgb(it.path, bits) for it in chunk]
        maps_b, scores_b = infer(model, images, size, dev)
        require_finite(checkpoint, [it.path for it in chunk], maps_b, scores_b)
        low.extend(maps_b)
        scores_list.extend(float(s) for s in scores_b)
        shapes.extend(img.shape[:2] for img in images)  # scored at the image's size (masks checked equal)
    t_infer = time.perf_counter() - t0

    scores = np.asarray(scores_list)
    labels = np.array([it.label for it in items])
    maps = _Lazy(len(items), lambda i: upsample_map(low[i], shapes[i]))
    loco = any(it.kind is not None for it in items)
    t1 = time.perf_counter()
    table = (_loco_metrics if loco else _plain_metrics)(items, scores, labels, maps, shapes)
    t_metrics = time.perf_counter() - t1

    k = pool_kernel(size)
    result = {
        "dataset": dataset, "category": category, "root": str(reader.root), "checkpoint": str(checkpoint),
        "model": {"preset": config.get("preset"), "size": size, "arch": config.get("arch", "paper"),
                  **({"combine": config["combine"]} if "combine" in config else {})}, "device": str(dev),
        "protocol": {
            "layout": "mvtec_loco" if loco else "mvtec",
            "anomaly_map": f"softmax anomaly channel at {size}x{size}, bilinear to the ground truth's size",
            "image_score": f"max after a {k}x{k} average pool at {size}x{size}",
            "max_fpr": AU_SPRO_MAX_FPR if loco else AUPRO_MAX_FPR,
        },
        "counts": {s: sum(it.split == s for it in items) for s in sorted({it.split for it in items})},
        "metrics": table,
        "thresholds": thresholds or None,
        "decisions": decision_report(items, scores, thresholds),
        "images": [{"path": str(it.path), "split": it.split, "label": it.label, "score": s}
                   for it, s in zip(items, scores_list, strict=True)],
        "seconds": {"inference": round(t_infer, 3), "metrics": round(t_metrics, 3)},
    }
    result["heatmaps"] = _write_heatmaps(items, scores, low, out_dir / "heatmaps", n_heatmaps, bits)
    result = _finite(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "metrics.md").write_text(markdown_table(result) + "\n\n" + decision_table(result["decisions"]) + "\n")
    return result


# --- reports ---------------------------------------------------------------------------------------------

def _pct(value) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}"


def markdown_table(result: dict) -> str:
    """The metrics of an evaluate() result as a markdown table (percent, one decimal)."""
    m = result["metrics"]
    title = f"**{result['dataset']} / {result['category']}** ({result['checkpoint']})\n\n"
    if result["protocol"]["layout"] == "mvtec_loco":
        lines = ["| split | anomalous | good | image AUROC | AU-sPRO (FPR 0.05) |", "|---|---|---|---|---|"]
        for name, row in m.items():
            lines.append(f"| {name} | {row.get('images', '')} | {row.get('good', '')} | "
                         f"{_pct(row['image_auroc'])} | {_pct(row['au_spro'])} |")
    else:
        lines = ["| split | images | image AUROC | pixel AUROC | pixel AP | AUPRO (FPR 0.3) |",
                 "|---|---|---|---|---|---|"]
        for name, row in m.items():
            cells = [row.get(key) for key in ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")]
            lines.append(f"| {name} | {row['images']} | " + " | ".join(_pct(c) for c in cells) + " |")
    return title + "\n".join(lines)


def _finite(obj):
    """NaN/inf (undefined metrics) become null so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.floating):
        return _finite(float(obj))
    return obj


def _panel(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    width = max(1, round(w * PANEL_HEIGHT / h))
    return cv2.resize(img, (width, PANEL_HEIGHT), interpolation=cv2.INTER_AREA if h > PANEL_HEIGHT
                      else cv2.INTER_LINEAR)


def heatmap_figure(image: np.ndarray, gt: np.ndarray, amap: np.ndarray, score: float) -> np.ndarray:
    """image | ground truth (red over the darkened image) | map overlay with the score; RGB uint8."""
    h, w = image.shape[:2]
    gt_view = (image * 0.4).astype(np.uint8)
    gt = cv2.resize(gt.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    gt_view[gt] = (255, 40, 40)
    over = _panel(colour_overlay(image, upsample_map(amap, (h, w))))
    cv2.putText(over, f"{score:.3f}", (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    gap = np.full((PANEL_HEIGHT, 4, 3), 255, np.uint8)
    return np.concatenate([_panel(image), gap, _panel(gt_view), gap, over], axis=1)


def _write_heatmaps(items: list[TestItem], scores: np.ndarray, low: list[np.ndarray], folder: Path,
                    n: int, bits: int | None = None) -> list[str]:
    """Figures for the n best- and worst-scored anomalous images and the n highest-scored good ones."""
    bad = sorted((i for i, it in enumerate(items) if it.label == 1), key=lambda i: -scores[i])
    good = sorted((i for i, it in enumerate(items) if it.label == 0), key=lambda i: -scores[i])
    picks = [("best", bad[:n]), ("worst", bad[::-1][:n]), ("fp-good", good[:n])]
    written = []
    for tag, indices in picks:
        for rank, i in enumerate(indices, 1):
            it = items[i]
            image = load_rgb(it.path, bits)
            gt = it.mask(image.shape[:2]) if it.label else np.zeros(image.shape[:2], bool)
            name = f"{tag}-{rank}_{it.split}_{it.path.stem}.png"
            save_image(folder / name, heatmap_figure(image, gt, low[i], float(scores[i])))
            written.append(f"heatmaps/{name}")
    return written

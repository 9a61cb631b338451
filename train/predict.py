"""Anomaly maps, scores and decisions for arbitrary image files with a trained checkpoint (no ground truth).

Writes what train.outputs describes: per image the map, the overlay and, when the checkpoint holds calibrated
thresholds (train.thresholds), the defect mask; `scores.csv` with `path,score,decision`, the image score being
evaluation's (max after the scaled 21 x 21 average pool). A global arch's `combine` may
average the score with the branch's image probability, and its map combine the two maps.
"""

from collections.abc import Sequence
from pathlib import Path

from synth.console import say
from synth.datasets.bitdepth import data_depth
from train.evaluate import batches, infer, require_finite, resolve_device
from train.model import model_from_payload, read_checkpoint
from train.outputs import expand_inputs, load_chunk, output_stems, write_image_outputs, write_scores
from train.thresholds import decide, describe

__all__ = ["expand_inputs", "predict"]


def predict(checkpoint: Path, inputs: Sequence[Path], out_dir: Path, device: str = "auto",
            batch_size: int = 8, skip_bad: bool = False) -> tuple[list[tuple[Path, float, bool | None]], list[str]]:
    """Write maps, overlays, masks and scores.csv for every input image; return ((path, score, NG or None
    without thresholds) rows, skipped).

    An unreadable image raises ImageError naming it, unless skip_bad: then it is reported on stderr,
    listed in `skipped.txt` and left out.
    """
    paths = expand_inputs(inputs)
    depth = data_depth(paths)       # the inputs are one category: one scale for their 16-bit files
    if depth.bits is not None:
        say(f"images: {depth.describe()}")
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    payload = read_checkpoint(Path(checkpoint))
    model, config = model_from_payload(Path(checkpoint), payload)
    model = model.to(dev).eval()
    thresholds = payload.get("thresholds") or None
    say(describe(thresholds))
    rows: list[tuple[Path, float, bool | None]] = []
    skipped: list[str] = []
    jobs = list(zip(paths, output_stems(paths), strict=True))
    for chunk in batches(jobs, batch_size, "predict"):
        loaded = load_chunk(chunk, depth.bits, skip_bad, skipped)
        if not loaded:
            continue
        maps, scores = infer(model, [img for _, _, img in loaded], config.size, dev)
        require_finite(checkpoint, [path for path, _, _ in loaded], maps, scores)
        decisions = decide(scores, thresholds)
        for k, ((path, stem, image), amap, score) in enumerate(zip(loaded, maps, scores, strict=True)):
            ng = None if decisions is None else bool(decisions[k])
            write_image_outputs(out_dir, stem, image, amap, ng, thresholds)
            rows.append((path, float(score), ng))
    write_scores(out_dir, rows, skipped)
    return rows, skipped

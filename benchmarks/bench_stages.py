"""Per-stage time of the synthesis pipeline per 256x256 image on one CPU core (median after warm-up).

    .venv/bin/python benchmarks/bench_stages.py [--images DIR] [--pidinet-weights PATH] [--count N]

Stages are `(name, function)` entries in `STAGES`, run in order on each image. A function receives the image's
context dict ({"rgb": uint8 (H, W, 3)} plus every earlier stage's output under that stage's name) and returns
its output, so a later stage (regions, edits, compose) can use the JND and edge maps of the earlier ones. To
add a stage, append an entry (or call `STAGES.append` from another script before `main`).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.features.edges import ClassicEdges
from synth.features.jnd import jnd_map

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "hazelnut_toy" / "hazelnut" / "train" / "good"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "weights" / "table5_pidinet.pth"

Stage = tuple[str, Callable[[dict[str, Any]], Any]]
_classic = ClassicEdges()
STAGES: list[Stage] = [
    ("jnd", lambda ctx: jnd_map(ctx["rgb"])),
    ("edges_classic", lambda ctx: _classic(ctx["rgb"])),
]



# ---- synthesis core (regions, one edit per strategy, compose); goal: edit + compose < 5 ms, 256 px, 1 core
def _synthesis_stages() -> list[Stage]:
    import warnings

    from synth.edit.compose import compose
    from synth.edit.damage import DAMAGE, paint_damage
    from synth.edit.edits import apply_colour
    from synth.edit.strategies import STRATEGIES, plan_edit
    from synth.features.regions import foreground_mask, semantic_regions
    from synth.render.standin import StandInRenderer

    standin = StandInRenderer()

    def foreground(ctx: dict[str, Any]) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return foreground_mask(ctx["rgb"], ctx["jnd"])

    def edit(strategy: str) -> Callable[[dict[str, Any]], Any]:
        def run(ctx: dict[str, Any]) -> Any:
            rng = np.random.default_rng(int(ctx["rgb"][::16, ::16].sum()))
            edge = ctx["edges_classic"]
            return plan_edit(strategy, edge, ctx["foreground"], ctx["regions"], edge, rng)
        return run

    def renders(ctx: dict[str, Any]) -> dict[str, np.ndarray]:  # stand-in R_A of every edit (not in the goal)
        out = {}
        for s in STRATEGIES:
            e = ctx[f"edit_{s}"]
            if e is not None:
                out[s] = (apply_colour(ctx["rgb"], e.region, e.params) if s == "colour"
                          else standin.render(e.edge[None], ctx["rgb"][None])[0])
        return out

    def comp(strategy: str) -> Callable[[dict[str, Any]], Any]:
        def run(ctx: dict[str, Any]) -> Any:
            e = ctx[f"edit_{strategy}"]
            if e is None:
                return None
            if strategy in DAMAGE:  # painted on the normal pixels: this is their whole compose
                return paint_damage(ctx["rgb"], e)
            ref = ctx["rgb"] if strategy == "colour" else ctx["render_normal_standin"]
            return compose(ctx["rgb"], ctx["render_edits_standin"][strategy], ref, e.region)
        return run

    return [("foreground", foreground),
            ("regions", lambda ctx: semantic_regions(ctx["rgb"], ctx["edges_classic"], ctx["foreground"],
                                                     ctx["jnd"])),
            ("render_normal_standin",
             lambda ctx: standin.render(ctx["edges_classic"][None], ctx["rgb"][None])[0]),
            *[(f"edit_{s}", edit(s)) for s in STRATEGIES],
            ("render_edits_standin", renders),
            *[(f"compose_{s}", comp(s)) for s in STRATEGIES]]


STAGES.extend(_synthesis_stages())


def pidinet_stage(weights: Path) -> Stage:
    """PiDiNet on CPU, one image per forward pass (folded convolutions, no grad)."""
    from synth.features.pidinet import PiDiNetEdges

    extractor = PiDiNetEdges(weights, device="cpu")
    return ("edges_pidinet_cpu", lambda ctx: extractor(ctx["rgb"]))


def load_images(folder: Path, count: int, size: int) -> list[np.ndarray]:
    paths = list_images(folder)[:count]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [resize_rgb(load_rgb(p), size) for p in paths]


def time_stages(stages: list[Stage], images: list[np.ndarray], warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per image per stage; the first `warmup` images are run but not counted."""
    times: dict[str, list[float]] = {name: [] for name, _ in stages}
    for i, img in enumerate(images[:warmup] + images):
        ctx: dict[str, Any] = {"rgb": img}
        for name, fn in stages:
            start = time.perf_counter()
            ctx[name] = fn(ctx)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of normal images")
    parser.add_argument("--pidinet-weights", type=Path, default=DEFAULT_WEIGHTS,
                        help="official table5_pidinet.pth (stage skipped when the file is absent)")
    parser.add_argument("--count", type=int, default=20, help="images to time")
    parser.add_argument("--size", type=int, default=256, help="square image side")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    stages = list(STAGES)
    if args.pidinet_weights.is_file():
        stages.append(pidinet_stage(args.pidinet_weights))
    images = load_images(args.images, args.count, args.size)
    times = time_stages(stages, images)
    print(f"{len(images)} images from {args.images}, {args.size}x{args.size}, one CPU core")
    print(f"{'stage':<24}{'median ms':>12}{'p90 ms':>10}{'images/s':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = float(np.percentile(values, 90))
        print(f"{name:<24}{median * 1e3:>12.1f}{p90 * 1e3:>10.1f}{1.0 / median:>10.1f}")


if __name__ == "__main__":
    main()

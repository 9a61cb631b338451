"""LogicAL vs Perlin (vs both) on the same work: same category, model preset, steps and seeds.

For each synthesizer and seed: build a generated dataset, train the localization network, evaluate it on the real
test split; print image AUROC and AU-sPRO (logical, structural, mean) as mean +- spread over seeds.

    python benchmarks/compare_synthesizers.py --dataset toybox --category tray --seeds 0 1 2
    python benchmarks/compare_synthesizers.py --dataset mvtec_loco --root data/raw/mvtec_loco --category pushpins \
        --size 256 --preset base --n 20000 --steps 20000 --generator data/mvtec_loco/pushpins/generator.pt
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from synth.build import build
from train.evaluate import evaluate
from train.loop import TrainConfig, train

SYNTHESIZERS = ("logical", "perlin", "both")
COLUMNS = [("logical", "image_auroc"), ("logical", "au_spro"), ("structural", "image_auroc"),
           ("structural", "au_spro"), ("mean", "image_auroc"), ("mean", "au_spro")]


def run_one(args: argparse.Namespace, synthesizer: str, seed: int) -> dict:
    """Build, train and evaluate once; results are cached in the run folder so a rerun skips finished work."""
    run = args.out / f"{synthesizer}-seed{seed}"
    result_path = run / "eval" / "metrics.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())["metrics"]
    t0 = time.perf_counter()
    build(args.dataset, args.root, [args.category], n=args.n, size=args.size, out=run / "data", seed=seed,
          shard_size=args.shard_size, workers=args.workers, generator=args.generator, synthesizer=synthesizer)
    t1 = time.perf_counter()
    shards = run / "data" / args.dataset / args.category
    cfg = TrainConfig(shards=shards, out=run / "model", steps=args.steps, batch_size=args.batch_size,
                      preset=args.preset, size=args.size, workers=args.loader_workers, seed=seed,
                      device=args.device, resume=True, lr=args.lr)
    checkpoint = train(cfg)
    t2 = time.perf_counter()
    result = evaluate(checkpoint, args.dataset, args.root, args.category, run / "eval", device=args.device)
    print(f"  {synthesizer} seed {seed}: build {t1 - t0:.0f} s, train {t2 - t1:.0f} s, "
          f"eval {time.perf_counter() - t2:.0f} s", flush=True)
    return result["metrics"]


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: mean +- standard deviation over seeds, in percent."""
    head = "| synthesizer | " + " | ".join(f"{split} {'I-AUROC' if m == 'image_auroc' else 'AU-sPRO'}"
                                            for split, m in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, runs in results.items():
        cells = []
        for split, metric in COLUMNS:
            vals = np.array([r[split][metric] for r in runs if r.get(split, {}).get(metric) is not None], float)
            cells.append(f"{100 * vals.mean():.1f} ± {100 * vals.std():.1f}" if vals.size else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="toybox")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--category", default="tray")
    p.add_argument("--synthesizers", nargs="+", default=list(SYNTHESIZERS), choices=SYNTHESIZERS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=2000, help="generated samples per run")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=600, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the preset's)")
    p.add_argument("--shard-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=2, help="build workers")
    p.add_argument("--loader-workers", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--generator", type=Path, default=None,
                   help="fitted generator for the logical synthesizer (default: the category's, fitted if missing)")
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = p.parse_args()
    if args.generator is None:
        args.generator = Path("data") / args.dataset / args.category / "generator.pt"
        if not args.generator.is_file():
            args.generator = None
    results = {}
    for synthesizer in args.synthesizers:
        results[synthesizer] = [run_one(args, synthesizer, seed) for seed in args.seeds]
    text = (f"{args.dataset}/{args.category}, {args.preset} @ {args.size}px, {args.n} samples, {args.steps} steps, "
            f"seeds {args.seeds}\n\n" + table(results))
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

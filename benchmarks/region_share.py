"""Do logical edits change parts? Share of planned logical edits whose region lies on a part, per strategy.

On the toybox the drawing code knows every part's mask (synth.datasets.toybox_truth), so each edit that
`build` would plan (synth.pipeline.plan_sample, the same seeds and the SynthConfig of `--strategies S`) is
checked against it, at the build size:
- remove:  the region (what goes missing) lies on a part;
- replace: the region lies on a part, and what comes in is a part of the other image;
- merge:   what comes in is a part of the other image, and it lands on the carrier (the tray) beside the parts.
"Lies on" and "lands on" are defined in `synth.datasets.toybox_truth.is_part_edit`. Regions that are a
piece of the tray's outline, a wall or the wood do not count.

    .venv/bin/python benchmarks/region_share.py --n 200 --size 128 [--sources 30] [--category bag]

`--category tray` (parts in compartments) or `bag` (loose parts at random places on a mat). Also printed:
how many drawn parts have a semantic region (over half of the part labelled) and how many regions lie on a part.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from synth.datasets import open_dataset
from synth.datasets.toybox_truth import covered, part_masks
from synth.features.edges import get_extractor
from synth.pipeline import prepare_source
from synth.preview import logical_edit_share


def region_quality(sources, index_of: list[int], size: int, category: str = "tray") -> tuple[int, int, int, int]:
    """(parts with a region, parts, regions on a part, regions) over the sources' semantic regions."""
    found = total = on = regions = 0
    for src, k in zip(sources, index_of, strict=True):
        parts = part_masks(category, "train", k, size=size)
        for label in range(1, int(parts.max()) + 1):
            found += bool((src.regions[parts == label] > 0).mean() > 0.5)
            total += 1
        for label in np.unique(src.regions[src.regions > 0]):
            on += covered(src.regions == label, parts > 0, 2 * max(2, round(3 * size / 256)), 0.5)
            regions += 1
    return found, total, on, regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="edits per strategy")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sources", type=int, default=30, help="toybox train images used as sources")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cover", type=float, default=0.5)
    parser.add_argument("--root", type=Path, default=None, help="toybox root (default data/raw/toybox)")
    parser.add_argument("--category", default="tray", help="toybox category: tray or bag")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    reader = open_dataset("toybox", args.root)
    paths = reader.train_images(args.category)[: args.sources]
    extractor = get_extractor("classic")
    sources = [prepare_source(p, args.size, extractor) for p in paths]
    index_of = [int(p.stem) for p in paths]
    result = logical_edit_share(sources, index_of, args.n, args.size, args.seed, args.cover, args.category)
    print(f"toybox {args.category}, {len(sources)} sources at {args.size} px, {args.n} samples per strategy, "
          f"edges {extractor.identity}, cover >= {args.cover}")
    print("| strategy | planned | no region | on a part | share |")
    print("|---|---|---|---|---|")
    for strategy, r in result.items():
        print(f"| {strategy} | {r['planned']} | {r['no_region']} | {r['on_part']} | {r['share']:.3f} |")
    found, total, on, regions = region_quality(sources, index_of, args.size, args.category)
    print(f"semantic regions: {found}/{total} drawn parts found, {on}/{regions} regions on a part")


if __name__ == "__main__":
    main()

"""MVTec AD: `<category>/train/good`, `test/<defect>`, `ground_truth/<defect>/<stem>[_mask].png`."""

from __future__ import annotations

from pathlib import Path

from synth.datasets.base import (
    LayoutReader,
    Problems,
    TestItem,
    broken_links_in,
    find_mask,
    mask_index,
    visible_dirs,
)
from synth.datasets.decode import broken_link
from synth.datasets.images import list_images


def split_test_items(category_dir: Path, problems: Problems) -> list[TestItem]:
    """Test items of an MVTec-AD-style category: `test/<split>/*` with masks in `ground_truth/<split>/`.

    The split `good` is normal; every other split is anomalous and each of its images needs a mask named
    `<stem>_mask.*` or `<stem>.*`.
    """
    items: list[TestItem] = []
    for folder in (category_dir / "test", category_dir / "ground_truth"):
        for problem in broken_links_in(folder):
            problems.add(problem)
    for split_dir in visible_dirs(category_dir / "test"):
        split = split_dir.name
        if split == "good":
            items += [TestItem(p, split, 0, None, None) for p in list_images(split_dir)]
            continue
        gt_dir = category_dir / "ground_truth" / split
        index = mask_index(gt_dir)
        for p in list_images(split_dir):
            mask = find_mask(index, p.stem)
            if mask is not None and broken_link(mask):
                problems.add(f"{p}: its ground-truth mask {broken_link(mask)}")
            elif mask is None:
                problems.add(f"{p}: no ground-truth mask (looked for {gt_dir / (p.stem + '_mask.png')} "
                             f"and {gt_dir / (p.stem + '.png')})")
            items.append(TestItem(p, split, 1, None, mask))
    return items


class MvtecReader(LayoutReader):
    """MVTec AD (15 categories; some grayscale, loaded as RGB); also look-alikes such as hazelnut_toy."""

    name = "mvtec"
    title = "an MVTec AD"
    layout = ("<category>/train/good/*.png, <category>/test/<defect>/*.png, "
              "<category>/ground_truth/<defect>/<stem>_mask.png")
    default_licence = "CC BY-NC-SA 4.0 (MVTec AD)"

    def _looks_like(self, folder: Path) -> bool:
        return (folder / "train" / "good").is_dir()

    def _train(self, category: str, problems: Problems) -> list[Path]:
        return list_images(self.category_dir(category) / "train" / "good")

    def _test(self, category: str, problems: Problems) -> list[TestItem]:
        return split_test_items(self.category_dir(category), problems)

"""Any folder of normal images: `<root>/<category>/` holding them directly, in `good/`, `train/` or
`train/good/`; optional `test/<split>/` with masks in `ground_truth/<split>/<stem>[_mask].png`."""

from __future__ import annotations

from pathlib import Path

from synth.datasets.base import LayoutReader, Problems, TestItem, has_images
from synth.datasets.images import list_images
from synth.datasets.mvtec import split_test_items

_GOOD_DIRS = (("train", "good"), ("train",), ("good",), ())


class FolderReader(LayoutReader):
    """Plain folders of normal images; a root that itself holds images is one category named after it."""

    name = "folder"
    title = "an image-folder"
    layout = ("<category>/*.png (or <category>/good/*, <category>/train/*, <category>/train/good/*), "
              "optional <category>/test/<split>/* with masks in "
              "<category>/ground_truth/<split>/<stem>[_mask].png")
    default_licence = "unknown (your own images: check their terms)"

    def _good_dir(self, folder: Path) -> Path | None:
        for parts in _GOOD_DIRS:
            candidate = folder.joinpath(*parts)
            if has_images(candidate):
                return candidate
        return None

    def _looks_like(self, folder: Path) -> bool:
        return self._good_dir(folder) is not None

    def _train(self, category: str, problems: Problems) -> list[Path]:
        good = self._good_dir(self.category_dir(category))
        return list_images(good) if good is not None else []

    def _test(self, category: str, problems: Problems) -> list[TestItem]:
        return split_test_items(self.category_dir(category), problems)

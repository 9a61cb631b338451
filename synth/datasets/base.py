"""What every dataset reader hands out (test items, defect regions) and the plumbing the readers share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from synth.datasets.decode import broken_link, orientation
from synth.datasets.images import is_image_entry, list_images, load_mask, read_defect_mask
from synth.errors import DatasetError, ImageError


def _resize_bool(mask: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    if shape is None or tuple(mask.shape) == tuple(shape):
        return mask
    out = cv2.resize(mask.astype(np.uint8), (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def image_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as loaded (upright by its EXIF orientation), from its header."""
    problem = broken_link(path)
    if problem:
        raise ImageError(problem)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
    return (w, h) if orientation(path) in (5, 6, 7, 8) else (h, w)


def size_mismatch(mask: Path, mask_hw: tuple[int, int], image: Path, image_hw: tuple[int, int]) -> str | None:
    """The problem of a mask whose size is not its image's (a transposed one included), else None."""
    if tuple(mask_hw) == tuple(image_hw):
        return None
    return (f"{mask}: mask is {mask_hw[1]}x{mask_hw[0]} but its image {image} is "
            f"{image_hw[1]}x{image_hw[0]} (width x height)")


def _checked(mask: np.ndarray, path: Path, image: Path, image_hw: tuple[int, int]) -> np.ndarray:
    problem = size_mismatch(path, mask.shape, image, image_hw)
    if problem:
        raise DatasetError(problem)
    return mask


@dataclass(frozen=True)
class DefectRegion:
    """One ground-truth PNG of MVTec LOCO (a "channel"): one defect, named by its pixel value."""

    path: Path
    defect_name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool

    def mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """bool (H, W): this defect's pixels, those at >= half its pixel value (exactly `pixel_value` in a
        lossless file, which holds only 0 and it; near it in a lossy one); resized nearest to `shape`."""
        return _resize_bool(load_mask(self.path) >= (self.pixel_value + 1) // 2, shape)


@dataclass(frozen=True)
class TestItem:
    """One test image with its label and where its ground truth lives."""

    __test__ = False  # not a pytest test class despite the name

    path: Path
    split: str
    label: int
    kind: str | None
    mask_path: Path | None
    regions: tuple[DefectRegion, ...] = field(default=())

    def check_masks(self) -> None:
        """DatasetError naming the file and both sizes when a mask's size is not the image's (from the
        headers: cheap enough to run over a test set before scoring it)."""
        hw = image_shape(self.path)
        for path in ([self.mask_path] if self.mask_path is not None else []) + [r.path for r in self.regions]:
            problem = size_mismatch(path, image_shape(path), self.path, hw)
            if problem:
                raise DatasetError(problem)

    def mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """bool (H, W): union of all defects (zeros for a good image), resized nearest to `shape` if given.

        DatasetError naming the file and both sizes when a mask's size is not the image's.
        """
        hw = image_shape(self.path)
        if self.mask_path is not None:
            return _resize_bool(_checked(read_defect_mask(self.mask_path), self.mask_path, self.path, hw), shape)
        union = np.zeros(hw, dtype=bool)
        for region in self.regions:
            union |= _checked(region.mask(), region.path, self.path, hw)
        return _resize_bool(union, shape)

    def region_masks(self, shape: tuple[int, int] | None = None) -> list[np.ndarray]:
        """bool (H, W) per LOCO defect region, size-checked like `mask`, resized nearest to `shape`."""
        hw = image_shape(self.path)
        return [_resize_bool(_checked(r.mask(), r.path, self.path, hw), shape) for r in self.regions]


class Reader(Protocol):
    """A dataset on disk: categories, their normal images and their labelled test images."""

    name: str
    root: Path
    licence: str
    problems: list[str]     # of the root itself (broken links where categories live)

    def categories(self) -> list[str]: ...
    def unknown_category(self, category: str) -> str: ...
    def train_images(self, category: str) -> list[Path]: ...
    def validation_images(self, category: str) -> list[Path]: ...
    def test_items(self, category: str) -> list[TestItem]: ...


class Problems:
    """Layout problems: raises the first one (strict, for normal use) or keeps them all (for `scan`)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[str] = []

    def add(self, message: str) -> None:
        if self.strict:
            raise DatasetError(message)
        self.items.append(message)


@dataclass
class Listing:
    """Everything a reader lists for one category, with the problems met on the way."""

    train: list[Path]
    validation: list[Path]
    test: list[TestItem]
    problems: list[str]


def broken_links_in(folder: Path) -> list[str]:
    """The problems of broken symbolic links directly inside a folder (a moved split or mask folder)."""
    if not folder.is_dir():
        return []
    return [problem for p in sorted(folder.iterdir()) if (problem := broken_link(p))]


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders, sorted, without hidden ones."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def mask_index(folder: Path) -> dict[str, Path]:
    """Image files in a ground-truth folder by stem (`<stem>_mask` and `<stem>` lookups are one dict hit)."""
    out: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem not in out or p.suffix.lower() == ".png":
            out[p.stem] = p
    return out


def find_mask(index: dict[str, Path], stem: str) -> Path | None:
    """The mask of image `stem`: `<stem>_mask.*` first, then `<stem>.*`."""
    return index.get(f"{stem}_mask") or index.get(stem)


def licence_note(root: Path, default: str) -> str:
    """The dataset's licence, pointing at a licence file in the root when there is one."""
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.is_file() and p.name.lower().startswith(("license", "licence", "copying")):
                return f"{default} (see {p})"
    return default


class LayoutReader:
    """Shared reader machinery: root checks, category discovery, strict and lenient listings.

    Subclasses set `name`, `title`, `layout`, `default_licence` and implement `_looks_like`, `_train`,
    `_test`; `_validation` defaults to no validation images.
    """

    name = ""
    title = ""  # "an MVTec AD", used as "<root>: not <title> root"
    layout = ""
    default_licence = ""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such folder; expected {self.title} root: {self.layout}")
        self.licence = licence_note(self.root, self.default_licence)
        self._dirs = self._discover()
        # broken links beside the categories (a category folder linked in whose target moved): listed by
        # `scan`, and `build` over every category stops on them, since a category silently missing is data lost
        self.problems = broken_links_in(self.root)
        if not self._dirs:
            extra = f" ({'; '.join(self.problems)})" if self.problems else ""
            raise DatasetError(f"{self.root}: not {self.title} root: expected {self.layout}{extra}")

    # -- discovery
    def _looks_like(self, folder: Path) -> bool:
        raise NotImplementedError

    def _discover(self) -> dict[str, Path]:
        if self._looks_like(self.root):
            return {self.root.name: self.root}
        return {d.name: d for d in visible_dirs(self.root) if d.name != "split_csv" and self._looks_like(d)}

    def categories(self) -> list[str]:
        """Category names, sorted."""
        return sorted(self._dirs)

    def category_dir(self, category: str) -> Path:
        """The folder of one category; DatasetError listing the available ones when unknown."""
        try:
            return self._dirs[category]
        except KeyError:
            raise DatasetError(self.unknown_category(category)) from None

    def unknown_category(self, category: str) -> str:
        """Why `category` is not one of this root's: a broken link of that name says so."""
        problem = broken_link(self.root / category)
        if problem:
            return f"category {category!r}: {problem}"
        return f"{self.root}: no category {category!r} in this root; available: {', '.join(self.categories())}"

    # -- listings
    def _train(self, category: str, problems: Problems) -> list[Path]:
        raise NotImplementedError

    def _validation(self, category: str, problems: Problems) -> list[Path]:
        return []

    def _test(self, category: str, problems: Problems) -> list[TestItem]:
        raise NotImplementedError

    def train_images(self, category: str) -> list[Path]:
        """The normal training images of a category, sorted."""
        return self._train(category, Problems(strict=True))

    def validation_images(self, category: str) -> list[Path]:
        """Normal validation images ([] for layouts without a validation split)."""
        return self._validation(category, Problems(strict=True))

    def test_items(self, category: str) -> list[TestItem]:
        """Labelled test images; DatasetError naming the file for a missing or unusable ground truth."""
        return self._test(category, Problems(strict=True))

    def listing(self, category: str) -> Listing:
        """Every list at once, collecting problems instead of raising (what `scan` reports)."""
        problems = Problems(strict=False)
        train = self._train(category, problems)
        validation = self._validation(category, problems)
        test = self._test(category, problems)
        return Listing(train, validation, test, problems.items)


def has_images(folder: Path) -> bool:
    """True when the folder directly holds at least one image file."""
    if not folder.is_dir():
        return False
    return any(is_image_entry(p) for p in folder.iterdir())

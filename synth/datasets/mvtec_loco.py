"""MVTec LOCO AD: train/validation/test splits, one ground-truth PNG per defect, `defects_config.json`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synth.datasets.base import DefectRegion, LayoutReader, Problems, TestItem, broken_links_in, visible_dirs
from synth.datasets.decode import broken_link
from synth.datasets.images import list_images, load_mask
from synth.errors import DatasetError, ImageError

CONFIG = "defects_config.json"
_KEYS = {"defect_name": str, "pixel_value": int, "saturation_threshold": (int, float),
         "relative_saturation": bool}


def load_defects_config(path: Path) -> dict[int, dict]:
    """`defects_config.json` as {pixel_value: entry}; DatasetError naming the file if missing or malformed."""
    if problem := broken_link(path):
        raise DatasetError(problem)
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8-sig"))   # editors may add a BOM
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; an MVTec LOCO category needs its defects_config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: expected a list of {{defect_name, pixel_value, saturation_threshold, "
                           f"relative_saturation}} objects, found {type(entries).__name__}")
    out: dict[int, dict] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: entry {i} is not an object")
        for key, kind in _KEYS.items():
            value = entry.get(key)
            if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DatasetError(f"{path}: entry {i} ({entry.get('defect_name', '?')}): field {key!r} is "
                                   f"missing or not {kind if isinstance(kind, type) else 'a number'}")
        if not 0 < entry["pixel_value"] < 65536:
            raise DatasetError(f"{path}: entry {i}: pixel_value {entry['pixel_value']} is out of range")
        if entry["pixel_value"] in out:
            raise DatasetError(f"{path}: pixel_value {entry['pixel_value']} is used twice")
        out[entry["pixel_value"]] = entry
    return out


def defect_value(values: np.ndarray) -> int | None:
    """The pixel value a LOCO ground-truth file marks its defect with: its one nonzero value (lossless
    file), or, when soft edges or lossy compression added others, the most frequent value at or above half
    the largest (the defect's interior; the noise sits near 0 and along edges). None for an empty file or
    one holding several defects' values (two exact levels, or two frequent levels far apart)."""
    counts = np.bincount(values.ravel())
    counts[0] = 0
    found = np.flatnonzero(counts)
    if found.size <= 2:     # one value; or two exact levels: two defects in one file
        return int(found[0]) if found.size == 1 else None
    top = found[found >= (int(found[-1]) + 1) // 2]
    ranked = top[np.argsort(counts[top])[::-1]]
    second = ranked[1] if ranked.size > 1 else ranked[0]
    if counts[second] * 4 > counts[ranked[0]] and abs(int(second) - int(ranked[0])) > 8:
        return None    # two distinct levels of similar weight: not one defect
    return int(ranked[0])


def _kind(split: str) -> str | None:
    for kind in ("logical", "structural"):
        if split.startswith(kind):
            return kind
    return None


class MvtecLocoReader(LayoutReader):
    """MVTec LOCO AD (5 categories); also reads the built-in toybox (category `tray`)."""

    name = "mvtec_loco"
    title = "an MVTec LOCO AD"
    layout = ("<category>/{train/good, validation/good, "
              "test/{good,logical_anomalies,structural_anomalies}}/*.png, "
              "<category>/ground_truth/<split>/<stem>/000.png ..., <category>/defects_config.json")
    default_licence = "CC BY-NC-SA 4.0 (MVTec LOCO AD)"

    def __init__(self, root: Path, name: str | None = None, licence: str | None = None) -> None:
        super().__init__(root)
        if name is not None:
            self.name = name
        if licence is not None:
            self.licence = licence
        self._configs: dict[str, dict[int, dict]] = {}

    def _looks_like(self, folder: Path) -> bool:
        return (folder / "train" / "good").is_dir() and (
            (folder / "validation").is_dir() or (folder / CONFIG).is_file())

    def defects_config(self, category: str) -> dict[int, dict]:
        """The category's defects by pixel value (cached)."""
        if category not in self._configs:
            self._configs[category] = load_defects_config(self.category_dir(category) / CONFIG)
        return self._configs[category]

    def _train(self, category: str, problems: Problems) -> list[Path]:
        return list_images(self.category_dir(category) / "train" / "good")

    def _validation(self, category: str, problems: Problems) -> list[Path]:
        return list_images(self.category_dir(category) / "validation" / "good")

    def _test(self, category: str, problems: Problems) -> list[TestItem]:
        cat = self.category_dir(category)
        config: dict[int, dict] | None = None
        items: list[TestItem] = []
        for folder in (cat / "test", cat / "ground_truth"):
            for problem in broken_links_in(folder):
                problems.add(problem)
        for split_dir in visible_dirs(cat / "test"):
            split = split_dir.name
            if split == "good":
                items += [TestItem(p, split, 0, None, None) for p in list_images(split_dir)]
                continue
            if config is None:
                try:
                    config = self.defects_config(category)
                except DatasetError as exc:
                    problems.add(str(exc))
                    config = {}
            for p in list_images(split_dir):
                regions = self._regions(cat / "ground_truth" / split / p.stem, p, config, problems)
                items.append(TestItem(p, split, 1, _kind(split), None, regions))
        return items

    def _regions(self, gt_dir: Path, image: Path, config: dict[int, dict],
                 problems: Problems) -> tuple[DefectRegion, ...]:
        files = [p for p in list_images(gt_dir) if p.suffix.lower() == ".png"]
        if problem := broken_link(gt_dir):
            problems.add(f"{image}: its ground-truth folder {problem}")
        elif not files:
            problems.add(f"{image}: no ground truth (expected {gt_dir}/000.png ...)")
        regions = []
        for f in files:
            try:
                values = load_mask(f)
            except ImageError as exc:
                problems.add(str(exc))
                continue
            value = defect_value(values)
            if value is None:
                found = np.flatnonzero(np.bincount(values.ravel()))
                found = found[found != 0]
                problems.add(f"{f}: a ground-truth PNG must hold one nonzero pixel value, found "
                             f"{found.size} ({', '.join(map(str, found[:5]))})")
                continue
            if not config:
                continue  # the config problem is already reported
            entry = config.get(value)
            if entry is None:
                problems.add(f"{f}: pixel value {value} is not in {gt_dir.parents[2] / CONFIG} "
                             f"(known: {', '.join(map(str, sorted(config)))})")
                continue
            regions.append(DefectRegion(f, entry["defect_name"], value, float(entry["saturation_threshold"]),
                                        bool(entry["relative_saturation"])))
        return tuple(regions)

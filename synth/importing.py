"""Labelled defect images as a generated dataset (schema v1): the toybox oracle and a user's own defect photos.

The same writer serves both: every sample is (anomaly image, bool mask, its normal image or None), resized to the
build size; each sample's normal becomes one source row of `sources.h5` with its JND, edges, foreground and
regions computed as `prepare` does (synth.pipeline.image_features), and the shards hold the anomaly and mask.

- `toybox_oracle`: the toybox drawing code's own test-style defects (synth.datasets.toybox.defect_twin, from the
  stream tag "oracle", apart from every split), each with the normal twin it was drawn from; defects cycle over
  the indices (sample i has DEFECTS[i mod len]). Trained on, it gives the ceiling a synthesizer can reach with a
  localizer at a budget (benchmarks/oracle.py; issue 23).
- `labelled_folder`: `FOLDER/anomaly/NAME.png` + `FOLDER/mask/NAME.png` (+ optional `FOLDER/normal/NAME.png`).
  Where there is no normal image, the source row holds the anomaly image itself and the shard's optional
  `has_normal` column (1 byte a sample, synth.store.schema.HAS_NORMAL) is 0: training masks the reconstruction
  targets of that sample out (train.losses.total_loss) and never shows its source as a normal image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synth.console import progress
from synth.datasets.images import list_images, load_mask, load_rgb, resize_rgb
from synth.edit.geometry import mask_bbox
from synth.errors import DatasetError, ImageError
from synth.lock import folder_lock
from synth.pipeline import image_features, quantise_edge
from synth.store.manifest import write_manifest
from synth.store.schema import JND_SCALE, KINDS, MANIFEST, SHARD_PATTERN, SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources

ORACLE_DIR = "toybox-oracle"     # --toybox-oracle writes OUT/toybox-oracle/<category>
ORACLE_TAG = "oracle"            # defect_twin's stream tag: scenes no toybox split holds
FOLDER_PARTS = ("anomaly", "mask", "normal")


@dataclass(frozen=True)
class Labelled:
    """One labelled defect: RGB uint8 (H, W, 3) anomaly, bool (H, W) mask, the RGB uint8 (H, W, 3) normal it
    differs from or None, its kind (one of KINDS) and defect name (stored as the sample's strategy)."""

    anomaly: np.ndarray
    mask: np.ndarray
    normal: np.ndarray | None
    kind: str
    defect: str


def oracle_defects(category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(logical, structural) defect names of toybox `category` (ValueError for an unknown one)."""
    from synth.datasets.toybox import categories

    scenes = categories().get(category)
    if scenes is None:
        raise DatasetError(f"toybox has no category {category!r}; choose {', '.join(sorted(categories()))}")
    return tuple(scenes.LOGICAL), tuple(scenes.STRUCTURAL)


def oracle_sample(category: str, seed: int, index: int) -> Labelled:
    """Sample `index` of the oracle set: defect DEFECTS[index mod len] (logical first, then structural) drawn
    by the toybox code with its normal twin, native 320 x 256 (the pair differs only inside the mask, dilated
    2 px: synth.datasets.toybox.defect_twin)."""
    from synth.datasets.toybox import defect_twin

    logical, structural = oracle_defects(category)
    names = logical + structural
    defect = names[index % len(names)]
    normal, anomaly, regions = defect_twin(category, seed, index, defect, ORACLE_TAG)
    mask = np.any(np.stack(regions), axis=0) if regions else np.zeros(anomaly.shape[:2], bool)
    return Labelled(anomaly, mask, normal, "logical" if defect in logical else "structural", defect)


def _stem_map(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in found:
            raise DatasetError(f"{p}: two images named {p.stem!r} in {folder} ({found[p.stem].name}, {p.name})")
        found[p.stem] = p
    return found


def scan_labelled(folder: Path) -> list[tuple[str, Path, Path, Path | None]]:
    """(name, anomaly, mask, normal or None) per defect image of a labelled folder (module doc), sorted by name.
    DatasetError naming the file: no anomaly/ folder or no image in it, a mask or normal without its anomaly
    image, an anomaly image without its mask."""
    folder = Path(folder)
    if not (folder / "anomaly").is_dir():
        raise DatasetError(f"{folder}: no anomaly/ folder (expected anomaly/NAME.png, mask/NAME.png and "
                           "optionally normal/NAME.png)")
    parts = {part: _stem_map(folder / part) for part in FOLDER_PARTS}
    if not parts["anomaly"]:
        raise DatasetError(f"{folder / 'anomaly'}: no images")
    for part in ("mask", "normal"):
        for stem, path in parts[part].items():
            if stem not in parts["anomaly"]:
                raise DatasetError(f"{path}: {part} without its anomaly image (no anomaly/{stem}.*)")
    missing = [p for stem, p in parts["anomaly"].items() if stem not in parts["mask"]]
    if missing:
        raise DatasetError(f"{missing[0]}: anomaly image without its mask (no mask/{missing[0].stem}.*)")
    return [(stem, path, parts["mask"][stem], parts["normal"].get(stem))
            for stem, path in sorted(parts["anomaly"].items())]


def load_labelled(anomaly: Path, mask: Path, normal: Path | None, kind: str, defect: str) -> Labelled:
    """One user defect: images via load_rgb, the mask via load_mask (> 0 is defect). ImageError naming the file
    when it cannot be read or its size differs from the anomaly image's."""
    image = load_rgb(anomaly)
    m = load_mask(mask) > 0
    pair = load_rgb(normal) if normal is not None else None
    for path, arr in ((mask, m), (normal, pair)):
        if arr is not None and arr.shape[:2] != image.shape[:2]:
            raise ImageError(f"{path}: size {arr.shape[1]}x{arr.shape[0]} differs from its anomaly image "
                             f"{anomaly} ({image.shape[1]}x{image.shape[0]})")
    return Labelled(image, m, pair, kind, defect)


def _clear(directory: Path) -> None:
    """Drop what a previous write left (shards, sources, manifest) so no stale file is read with the new one."""
    for p in directory.iterdir():
        if p.name in (MANIFEST, SOURCES) or SHARD_PATTERN.match(p.name.removesuffix(".tmp")):
            p.unlink()


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def write_labelled(directory: Path, sample: Callable[[int], Labelled], n: int, size: int, defects: list[str],
                   meta: dict, seed: int = 0, shard_size: int = 500, edges: str = "classic",
                   weights: Path | None = None, has_normal_column: bool = False) -> dict:
    """Write `n` labelled samples as a generated dataset in `directory` (created; held under its folder lock;
    earlier shards, sources and manifest are replaced) and return the manifest.

    `sample(i)` makes sample i (one at a time: native images are never all in memory). Images are resized to
    size x size (resize_rgb), masks with nearest neighbours; sample i uses source row i (its normal, else its
    anomaly image with has_normal 0). `defects`: the strategy names (every sample's defect must be one).
    `meta`: the manifest's dataset, category, licence and config. `has_normal_column`: write the optional
    `has_normal` column (needed when some sample has no normal; a toybox oracle set keeps the plain schema).
    """
    from synth.features.edges import get_extractor

    directory = Path(directory)
    extractor = get_extractor(edges, weights)
    if n <= 0:
        raise DatasetError(f"{directory}: nothing to import (n = {n})")
    rows: list[tuple] = []
    by_kind, by_strategy = Counter(), Counter()
    with folder_lock(directory):
        _clear(directory)
        for k in range(-(-n // shard_size)):
            first, count = k * shard_size, min(shard_size, n - k * shard_size)
            with ShardWriter(directory / shard_name(k), first, count, size, size, defects, has_normal_column) as w:
                for i in progress(range(first, first + count), desc=f"{meta['category']}: import", total=count):
                    s = sample(i)
                    anomaly, mask = resize_rgb(s.anomaly, size), _resize_mask(s.mask, size)
                    f = image_features(resize_rgb(s.anomaly if s.normal is None else s.normal, size), extractor)
                    rows.append((f.image, np.clip(np.rint(f.jnd * JND_SCALE), 0, 255).astype(np.uint8),
                                 quantise_edge(f.edge), f.foreground.astype(np.uint8), f.regions))
                    w.append(anomaly, mask, i, KINDS.index(s.kind), defects.index(s.defect), seed,
                             mask_bbox(mask), s.normal is not None)
                    by_kind[s.kind] += 1
                    by_strategy[s.defect] += 1
        image, jnd, edge, fg, regions = (np.stack(a) for a in zip(*rows, strict=True))
        write_sources(directory / SOURCES, image, jnd, edge, fg, regions, np.zeros_like(image),
                      [f"{meta['category']}/{i:06d}" for i in range(n)],
                      {"category": meta["category"], "edges": edges, "size": size, "renderer": "none"})
        counts = {"samples": n, "by_kind": dict(sorted(by_kind.items())),
                  "by_strategy": dict(sorted(by_strategy.items())), "rejections": {}}
        manifest = {**meta, "seed": seed, "n": n, "shard_size": shard_size, "counts": counts,
                    "report": {"counts": counts}}
        write_manifest(directory, manifest)
    return manifest


def toybox_oracle(out: Path, category: str, n: int, seed: int, size: int, shard_size: int = 500,
                  edges: str = "classic", weights: Path | None = None) -> Path:
    """Write the oracle set of toybox `category` to `out/toybox-oracle/<category>` (module doc); its path.

    The manifest's dataset is "toybox" (position-bound as the toybox builds: no flips in training), with
    `import: toybox-oracle`, so a model trained on it is evaluated like one trained on a build."""
    logical, structural = oracle_defects(category)
    directory = Path(out) / ORACLE_DIR / category
    meta = {"dataset": "toybox", "category": category, "import": ORACLE_DIR, "licence": "generated by code",
            "config": {"synthesizer": "oracle", "tag": ORACLE_TAG, "defects": list(logical + structural),
                       "edges": edges, "size": size}}
    write_labelled(directory, lambda i: oracle_sample(category, seed, i), n, size, list(logical + structural),
                   meta, seed, shard_size, edges, weights)
    return directory


def labelled_folder(folder: Path, out: Path, size: int, kind: str = "logical", shard_size: int = 500,
                    edges: str = "classic", weights: Path | None = None, seed: int = 0) -> Path:
    """Write a user's labelled folder (module doc) to `out/import/<folder name>`; its path. Every sample gets
    `kind` and the strategy "import"; errors as `scan_labelled` and `load_labelled`."""
    if kind not in KINDS:
        raise DatasetError(f"kind {kind!r}: choose {', '.join(KINDS)}")
    folder = Path(folder)
    found = scan_labelled(folder)
    directory = Path(out) / "import" / folder.resolve().name
    meta = {"dataset": "import", "category": folder.resolve().name, "import": str(folder),
            "licence": "the user's", "config": {"synthesizer": "import", "kind": kind, "edges": edges,
                                                "size": size, "names": [name for name, *_ in found]}}
    write_labelled(directory, lambda i: load_labelled(*found[i][1:], kind, "import"), len(found), size,
                   ["import"], meta, seed, shard_size, edges, weights, any(f[3] is None for f in found))
    return directory

"""ShardDataset: a generated dataset (directory or archive) as training tensors.

`to_float(batch, device)` turns a collated batch into float32 tensors at the model size:
  image  (B, 3, H, W) in [0, 1]  the anomaly image, or the unaltered normal image (DRAEM-style mixing)
  mask   (B, 1, H, W) in {0, 1}  where the anomaly is (all zeros for a normal item)
  normal (B, 3, H, W) in [0, 1]  the source image: target of the image head
  jnd    (B, 1, H, W)            JND of the source in grey levels / JND_UNIT (16): ~0.2 mid-grey, ~1.2 dark
  edge   (B, 1, H, W) in [0, 1]  edge map of the source (stored u8 / 255)
  has_normal (B,) in {0, 1}      0 where the source is no true normal (an import without one): no reconstruction
Items travel from the loader workers as uint8 (4x less to copy between processes: float32 items cap a
worker at ~350 samples/s at 256 px on a small CPU, uint8 items at >1000) and become floats on the device.
Whether an item is normal, and its augmentation, follow from (seed, epoch, index) only, so any worker
on any machine draws the same. HDF5 files open lazily in each DataLoader worker; nothing open is pickled.
"""

import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from synth.console import say
from synth.errors import ShardError
from synth.rng import sample_rng
from synth.store.reader import GeneratedDataset
from synth.store.schema import HAS_NORMAL, JND_SCALE, shard_name

JND_UNIT = 16.0  # grey levels: jnd target = jnd / JND_UNIT (NAMM: ~3 levels mid-grey, ~20 on black)
POSITION_BOUND_DATASETS = {"mvtec_loco", "toybox"}  # left and right, top and bottom carry meaning
POSITION_BOUND_CATEGORIES = {("mvtec", "metal_nut"), ("mvtec", "transistor")}  # "flip" / "misplaced" defects


def resolve_dataset(path: Path, cache_dir: Path | None = None) -> Path:
    """A generated dataset directory, or an archive verified and unpacked to a cache (synth.store.archive)."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise ShardError(f"{path}: no such generated dataset (directory or archive)")
    from synth.store.archive import open_dataset_path  # only archives need it

    return Path(open_dataset_path(path, cache_dir=cache_dir))


def position_bound(manifest: dict) -> bool:
    """True when flipping would turn a normal image of this category into an anomaly."""
    dataset, category = str(manifest.get("dataset", "")), str(manifest.get("category", ""))
    return dataset in POSITION_BOUND_DATASETS or (dataset, category) in POSITION_BOUND_CATEGORIES


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _chw(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W[, C]) -> a uint8 (C, H, W) tensor of its own (never a view of a cached array)."""
    arr = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return torch.from_numpy(np.array(arr, order="C", copy=True))


def to_float(batch: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A collated uint8 batch of ShardDataset items -> the float32 training tensors (module doc) on `device`.

    The brightness jitter is applied here, identically to image and normal.
    """
    nb = torch.device(device).type == "cuda"
    b = {k: v.to(device, non_blocking=nb) for k, v in batch.items()}
    gain = b["brightness"].float().view(-1, 1, 1, 1) / 255.0
    return {
        "image": (b["image"].float() * gain).clamp_(0, 1),
        "mask": b["mask"].float(),
        "normal": (b["normal"].float() * gain).clamp_(0, 1),
        "jnd": b["jnd"].float() / (b["jnd_scale"].float().view(-1, 1, 1, 1) * JND_UNIT),
        "edge": b["edge"].float() / 255.0,
        **({"has_normal": b["has_normal"].float()} if "has_normal" in b else {}),   # (B,) in {0, 1}
    }


class ShardDataset(Dataset):
    """Training items from a generated dataset; `len` is the number of generated samples.

    normal_fraction: share of items replaced by an unaltered normal source (mask zero), drawn per
    (seed, epoch, index); flips: random horizontal/vertical flips, refused (with a note) for position-bound
    categories; jitter: brightness factor in [1 - jitter, 1 + jitter], the same for image and normal.
    Index with `(epoch, index)`, or set_epoch(e) and index with plain ints (then workers must not be
    persistent, or they never see the new epoch).
    """

    def __init__(self, path: Path, size: int, normal_fraction: float = 0.5, seed: int = 0,
                 flips: bool = False, jitter: float = 0.0, verify: bool = True, cache_dir: Path | None = None,
                 cache_sources: int = 1024):
        if not 0.0 <= normal_fraction <= 1.0:
            raise ValueError(f"normal_fraction must be in [0, 1], not {normal_fraction}")
        self.directory = resolve_dataset(path, cache_dir)
        self.reader = GeneratedDataset(self.directory, verify=verify)
        self.manifest = self.reader.manifest
        if len(self.reader) == 0 or self.reader.source_count() == 0:
            raise ShardError(f"{self.directory}: generated dataset holds no samples")
        self.n_sources = self.reader.source_count()
        self.normal_sources = self.reader.true_normal_sources()   # imports without normals are never shown as one
        self.size, self.normal_fraction, self.seed = int(size), float(normal_fraction), int(seed)
        self.jitter, self.epoch = float(jitter), 0
        self.flips = bool(flips)
        if self.flips and position_bound(self.manifest):
            say(f"note: flips disabled, {self.manifest.get('dataset')}/{self.manifest.get('category')} "
                "is position-bound (a flipped normal image would be an anomaly)")
            self.flips = False
        self.jnd_scale = float(JND_SCALE)
        self.cache_sources = int(cache_sources)
        self._pid, self._files, self._sources = os.getpid(), {}, {}

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def categories(self) -> list[str]:
        """[`dataset/category`] of the generated dataset: what a checkpoint records it was trained on."""
        return [f"{self.manifest.get('dataset', '?')}/{self.manifest.get('category', '?')}"]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:
        """Workers get a copy without open HDF5 handles or cached arrays (they reopen and refill lazily)."""
        return {**self.__dict__, "_files": {}, "_sources": {}}

    def _shard(self, index: int) -> tuple[tuple, int]:
        """(file, anomaly, mask, sources) of the shard holding `index`, and the row; per process, since
        handles do not survive fork. The small `source` column is read whole once."""
        if os.getpid() != self._pid:
            self._files, self._pid = {}, os.getpid()
        k, row = divmod(index, self.reader.shard_size)
        name = shard_name(k)
        entry = self._files.get(name)
        if entry is None:
            path = self.directory / name
            try:
                f = h5py.File(path, "r")
                # HAS_NORMAL (optional, imports): 0 where the source row is no true normal; absent = all 1
                entry = self._files[name] = (f, f["anomaly"], f["mask"], f["source"][:],
                                             f[HAS_NORMAL][:] if HAS_NORMAL in f else None)
            except (OSError, KeyError) as exc:
                raise ShardError(f"{path}: unreadable shard ({exc})") from None
        return entry, row

    def source(self, source: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A source's (normal, jnd, edge) at the model size, cached per process (sources are few)."""
        cached = self._sources.get(source)
        if cached is None:
            s = self.reader.normal(source)
            cached = tuple(_resize(a, self.size) for a in (s.normal, s.jnd, s.edge))
            if len(self._sources) < self.cache_sources:
                self._sources[source] = cached
        return cached

    def generated(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Sample `index`'s anomaly image, mask (u8 0/255) and source: only its own chunk is read."""
        (f, anomaly, mask, sources, _), row = self._shard(index)
        try:
            return anomaly[row], mask[row], int(sources[row])
        except (OSError, ValueError, IndexError) as exc:
            raise ShardError(f"{f.filename}: cannot read sample row {row} ({exc})") from None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item `index`, or `(epoch, index)` (the training loop's sampler passes the epoch this way)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = sample_rng(self.seed, "train-item", int(index), int(epoch))
        has_normal = True
        if self.normal_fraction > 0 and len(self.normal_sources) and rng.random() < self.normal_fraction:
            normal, jnd, edge = self.source(int(self.normal_sources[rng.integers(len(self.normal_sources))]))
            image, mask = normal, np.zeros(normal.shape[:2], np.uint8)
        else:
            anomaly, mask, src = self.generated(int(index))
            normal, jnd, edge = self.source(src)
            has_normal = self.has_normal(int(index))
            image, mask = _resize(anomaly, self.size), (_resize(mask, self.size) >= 128).astype(np.uint8)
        arrays = [image, mask, normal, jnd, edge]
        if self.flips:
            if rng.random() < 0.5:
                arrays = [a[:, ::-1] for a in arrays]
            if rng.random() < 0.5:
                arrays = [a[::-1] for a in arrays]
        names = ("image", "mask", "normal", "jnd", "edge")
        item = {name: _chw(a) for name, a in zip(names, arrays, strict=True)}
        brightness = 1.0 + float(rng.uniform(-self.jitter, self.jitter)) if self.jitter > 0 else 1.0
        item["brightness"] = torch.tensor(brightness, dtype=torch.float32)
        item["jnd_scale"] = torch.tensor(self.jnd_scale, dtype=torch.float32)
        item["has_normal"] = torch.tensor(has_normal, dtype=torch.uint8)   # 0: losses skip the reconstruction
        return item

    def has_normal(self, index: int) -> bool:
        """False where sample `index`'s source row is no true normal image (an import without one)."""
        (_, _, _, _, column), row = self._shard(index)
        return True if column is None else bool(column[row])

    def close(self) -> None:
        """Close HDF5 files opened by this process (reads reopen them)."""
        if os.getpid() == self._pid:
            for entry in self._files.values():
                entry[0].close()
        self._files = {}
        self.reader.close()

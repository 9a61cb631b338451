"""Training data for one model over several generated datasets, sampled balanced over categories.

A unified model (OmniAL, the paper's backbone, trains one network for all categories) must not learn mostly
the category with the most samples. BalancedDataset interleaves its parts: item i comes from category
i mod n, so every batch and every epoch holds the categories in equal shares whatever their sizes; a
smaller category repeats its samples, each repeat with its own normal/anomaly mix and augmentation. An epoch
has n x (largest category) items. `training_data` picks ShardDataset or BalancedDataset from TrainConfig.shards.
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset

from synth.errors import ShardError
from train.data import ShardDataset

REPEAT_STRIDE = 1 << 16  # epoch key of repeat r of epoch e: e * REPEAT_STRIDE + r (distinct for any sizes used)


class BalancedDataset(Dataset):
    """Several ShardDatasets as one, item i from part i mod n (module doc). Items are ShardDataset's."""

    def __init__(self, parts: list[ShardDataset]):
        if len(parts) < 2:
            raise ValueError("BalancedDataset needs at least two datasets")
        names = [p.categories[0] for p in parts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ShardError(f"category {', '.join(twice)} found twice: "
                             + ", ".join(str(p.directory) for p in parts if p.categories[0] in twice))
        self.parts, self.categories = parts, names
        self.per_part = max(len(p) for p in parts)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.parts) * self.per_part

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        k, slot = int(index) % len(self.parts), int(index) // len(self.parts)
        part = self.parts[k]
        repeat, local = divmod(slot, len(part))
        item = part[(int(epoch) * REPEAT_STRIDE + repeat, local)]
        item["category"] = torch.tensor(k, dtype=torch.int64)
        return item

    def close(self) -> None:
        for part in self.parts:
            part.close()


def training_data(shards: Path | list[Path], size: int, normal_fraction: float, seed: int, flips: bool,
                  jitter: float, verify: bool = True, cache_dir: Path | None = None) -> Dataset:
    """ShardDataset for one generated dataset (directory or .tar); BalancedDataset for a list of several.
    Either has `categories` (list of `dataset/category`), which the checkpoint records."""
    paths = list(shards) if isinstance(shards, (list, tuple)) else [shards]
    parts = [ShardDataset(p, size, normal_fraction, seed, flips, jitter, verify=verify, cache_dir=cache_dir)
             for p in paths]
    return parts[0] if len(parts) == 1 else BalancedDataset(parts)

"""`logical-train --shards DIR` over a folder of generated datasets: one model per category, or one unified.

A data folder (e.g. `data/` after `logical-synth build` without --category) holds generated datasets at any
depth, found by their manifest.json, and/or their .tar archives. By default each category gets its own
model, as DRAEM and the LogicAL paper train, in `<out>/<dataset>/<category>/`, one after the other. Each
category is the single run `logical-train --shards <it> --out <that folder> --resume`: a finished one
(model.pt at its last step) is kept, an interrupted one continues from its last.pt exactly, so rerunning the
same command after a kill trains nothing twice. `--only` and `--task-index/--task-count` split the
categories over processes, GPUs or a cluster array; `--unified` trains one model over all of them
(train.balanced), written to `<out>/` like a single run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch.distributed as dist

from synth.console import duration, say
from synth.errors import LogicalError, ShardError
from synth.store.archive import open_archive, plain_name
from synth.store.manifest import read_manifest
from synth.store.schema import MANIFEST
from train.calibrate import calibrate_after_training, stored_thresholds
from train.loop import TrainConfig, check_same_config, setup_distributed, train
from train.model import make_config, read_checkpoint
from train.thresholds import DEFAULT_FPR


@dataclass(frozen=True)
class Found:
    """One generated dataset of a data folder: its directory or .tar, and what its manifest says it is."""

    path: Path
    dataset: str
    category: str

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.category}"


def is_data_folder(path: Path) -> bool:
    """True for a directory that is not itself a generated dataset (no manifest.json at its top)."""
    return Path(path).is_dir() and not (Path(path) / MANIFEST).is_file()


def find_datasets(root: Path) -> list[Found]:
    """Every generated dataset under `root` (manifest.json at any depth; `*.tar` archives of one), sorted by
    dataset/category. Hidden folders are skipped; a folder with an unfinished build (`.build/` but no
    manifest) is reported and skipped. ShardError: none found, or one category found twice."""
    root = Path(root)
    found: list[Found] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if MANIFEST in files:
            manifest = read_manifest(here)
            found.append(Found(here, str(manifest.get("dataset")), str(manifest.get("category"))))
            dirs[:] = []
            continue
        if (here / ".build").is_dir():
            say(f"note: {here}: build not finished (no {MANIFEST}); skipped")
        for name in sorted(f for f in files if f.endswith(".tar") and not f.startswith(".")):
            with open_archive(here / name) as idx:
                found.append(Found(here / name, str(idx.manifest.get("dataset")),
                                   str(idx.manifest.get("category"))))
    if not found:
        raise ShardError(f"{root}: no generated dataset found (no {MANIFEST} at any depth, no .tar archive "
                         "of one); build one with `logical-synth build`")
    found.sort(key=lambda f: (f.dataset, f.category, str(f.path)))
    names = [f.name for f in found]
    twice = [f for f in found if names.count(f.name) > 1]
    if twice:
        raise ShardError(f"{root}: category {twice[0].name} found more than once: "
                         + ", ".join(str(f.path) for f in twice) + "; move one of them out of the folder")
    return found


def select(found: list[Found], only: tuple[str, ...] = (), task_index: int | None = None,
           task_count: int | None = None) -> list[Found]:
    """The categories this process trains: those named by --only (`DATASET/CATEGORY` or `CATEGORY`,
    comma-separated or repeated), then every task_count-th from task_index. LogicalError for a name that
    matches nothing, or a task index out of range."""
    chosen = found
    if only:
        wanted = [w.strip() for entry in only for w in entry.split(",") if w.strip()]
        unknown = [w for w in wanted if not any(w in (f.name, f.category) for f in found)]
        if unknown:
            raise LogicalError(f"--only {', '.join(unknown)}: not found; the folder holds "
                               + ", ".join(f.name for f in found))
        chosen = [f for f in found if f.name in wanted or f.category in wanted]
    if (task_index is None) != (task_count is None):
        raise LogicalError("--task-index and --task-count go together (e.g. --task-index "
                           "$SLURM_ARRAY_TASK_ID --task-count $SLURM_ARRAY_TASK_COUNT)")
    if task_count is not None:
        if not 0 <= task_index < task_count:
            raise LogicalError(f"--task-index {task_index}: must be in 0..{task_count - 1} (--task-count "
                               f"{task_count})")
        chosen = chosen[task_index::task_count]
    return chosen


def run_folder(root: Path, name: Found) -> Path:
    """Run folder of one category: `<root>/<dataset>/<category>/`."""
    return Path(root) / plain_name(name.dataset) / plain_name(name.category)


def finished(out: Path, cfg: TrainConfig) -> int | None:
    """The step of `<out>/model.pt` when it is a finished run of this configuration, else None.
    CheckpointError when the folder holds a model of another preset/size (that is not this command)."""
    path = Path(out) / "model.pt"
    if not path.is_file():
        return None
    payload = read_checkpoint(path)
    check_same_config(path, payload, make_config(cfg.preset, cfg.size, cfg.arch))
    step, total = int(payload.get("step", -1)), int(payload.get("total_steps", 0))
    if step < total or (cfg.steps is not None and total != cfg.steps):
        return None
    return step


def _say(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line per category, not one per process
        say(message)


def calibrated(model_path: Path, shards: Path | list[Path], fpr: float | None, device: str) -> Path:
    """`model_path` after storing its decision thresholds at `fpr` (train.calibrate) unless it holds them
    already at that rate; rank 0 only, nothing for fpr None."""
    if fpr is not None and os.environ.get("RANK", "0") == "0":
        stored = stored_thresholds(model_path)
        if not stored or abs(stored["fpr"] - fpr) > 1e-12:
            calibrate_after_training(model_path, shards, fpr, device)
    return model_path


def train_per_category(cfg: TrainConfig, chosen: list[Found], fpr: float | None = DEFAULT_FPR) -> list[Path]:
    """Train (or keep, or resume) one model per category in `chosen`, in order, with a progress line
    `[k/n] dataset/category ... ETA`; returns the model.pt paths.

    Under torchrun one process group serves every category (joining and leaving one per category on the
    same port hangs the second). A category that stops with a LogicalError (e.g. its loss turned NaN) is
    reported and the others go on; the run then fails naming every such category."""
    owned = not dist.is_initialized()
    setup_distributed(cfg.device)
    try:
        paths, failed = _train_each(cfg, chosen, fpr)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()
    if failed:
        raise LogicalError(f"{len(failed)} of {len(chosen)} categories stopped: " + "; ".join(failed))
    return paths


def _train_each(cfg: TrainConfig, chosen: list[Found], fpr: float | None) -> tuple[list[Path], list[str]]:
    paths, failed, spent, trained = [], [], 0.0, 0
    for k, item in enumerate(chosen, 1):
        out = run_folder(cfg.out, item)
        left = len(chosen) - k + 1
        eta = f", ETA {duration(spent / trained * left)}" if trained else ""
        step = finished(out, cfg)
        if step is not None:
            _say(f"[category {k} of {len(chosen)}] {item.name}: already trained ({out / 'model.pt'} at step "
                f"{step}), kept")
            paths.append(calibrated(out / "model.pt", item.path, fpr, cfg.device))
            continue
        _say(f"[category {k} of {len(chosen)}] {item.name}: training into {out}{eta}")
        t0 = time.perf_counter()
        try:
            paths.append(calibrated(train(replace(cfg, shards=item.path, out=out, resume=True)), item.path, fpr,
                                    cfg.device))
        except LogicalError as exc:
            _say(f"[category {k} of {len(chosen)}] {item.name}: stopped: {exc}")
            failed.append(f"{item.name}: {exc}")
            continue
        spent, trained = spent + time.perf_counter() - t0, trained + 1
    return paths, failed


def train_shards(cfg: TrainConfig, unified: bool = False, only: tuple[str, ...] = (),
                 task_index: int | None = None, task_count: int | None = None,
                 fpr: float | None = DEFAULT_FPR) -> list[Path]:
    """`logical-train --shards`: one dataset (directory or .tar) as before, or a data folder (module doc).
    Each model is then calibrated at false-reject rate `fpr` (None: not). Returns the model.pt path(s) written
    or kept."""
    shards = Path(cfg.shards)
    folder_options = unified or only or task_index is not None or task_count is not None
    if not is_data_folder(shards):
        if folder_options:
            raise LogicalError(f"--unified, --only and --task-index/--task-count apply to a folder of generated "
                               f"datasets; {shards} is one dataset")
        return [calibrated(train(cfg), shards, fpr, cfg.device)]
    found = find_datasets(shards)
    _say(f"{shards}: {len(found)} generated dataset(s): {', '.join(f.name for f in found)}")
    if unified:
        if task_index is not None or task_count is not None:
            raise LogicalError("--unified trains one model: --task-index/--task-count do not apply "
                               "(use torchrun to spread it over GPUs)")
        chosen = select(found, only)
        if len(chosen) < 2:
            raise LogicalError(f"--unified needs at least two categories; {shards} gives "
                               f"{', '.join(f.name for f in chosen)}")
        _say(f"unified model over {len(chosen)} categories into {cfg.out}")
        paths = [f.path for f in chosen]
        return [calibrated(train(replace(cfg, shards=paths)), paths, fpr, cfg.device)]
    chosen = select(found, only, task_index, task_count)
    if not chosen:
        say(f"nothing to train for task {task_index} of {task_count}: {len(found)} categories")
        return []
    return train_per_category(cfg, chosen, fpr)

"""DDP: two CPU processes (gloo on 127.0.0.1) train in lockstep and end with identical weights."""

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train import make_dataset

from train.loop import TrainConfig, fit
from train.model import LocalizationNet, make_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, shards: str, out: str, result: str, arch: str = "paper") -> None:
    """One torchrun-like process: the environment torchrun would set, then the ordinary training entry."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    model, _ = fit(TrainConfig(shards=Path(shards), out=Path(out), steps=3, batch_size=2, device="cpu",
                               preset="small", size=32, workers=0, log_every=1, ckpt_every=10, arch=arch))
    torch.save(model.state_dict(), Path(result) / f"rank{rank}.pt")


@pytest.mark.parametrize("arch", ["paper", "attention", "composition"])
def test_two_processes_end_with_identical_weights(tmp_path, arch):
    shards, out = tmp_path / "ds", tmp_path / "run"
    make_dataset(shards, n=16, shard_size=8)
    mp.spawn(worker, args=(2, free_port(), str(shards), str(out), str(tmp_path), arch), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # parameters and BatchNorm buffers
    torch.manual_seed(0)
    initial = LocalizationNet(make_config("small", 32, arch)).state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a if k.endswith("weight"))  # it did train
    # only rank 0 writes: one model, one log with one line per step
    assert (out / "model.pt").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    saved = torch.load(out / "model.pt", weights_only=True)
    assert ("composition" in saved) == (arch == "composition")   # every rank fits it; rank 0 stores it


def test_one_process_under_torchrun_runs_the_ddp_path(tmp_path):
    """`torchrun --nproc_per_node 1` (RANK, WORLD_SIZE=1, MASTER_ADDR set) joins a process group, as
    benchmarks/gpu_check.py relies on to show the DDP path starts on one GPU."""
    shards, out = tmp_path / "ds", tmp_path / "run"
    make_dataset(shards, n=8, shard_size=8)
    mp.spawn(worker, args=(1, free_port(), str(shards), str(out), str(tmp_path)), nprocs=1, join=True)
    assert json.loads((out / "train.json").read_text())["distributed"] is True
    assert (tmp_path / "rank0.pt").is_file()


def test_a_plain_run_stays_out_of_process_groups(tmp_path):
    shards, out = tmp_path / "ds", tmp_path / "run"
    make_dataset(shards, n=8, shard_size=8)
    fit(TrainConfig(shards=shards, out=out, steps=1, batch_size=2, device="cpu", preset="small", size=32,
                    workers=0))
    assert json.loads((out / "train.json").read_text())["distributed"] is False


def folder_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    """A torchrun-like process training a data folder, category after category (train.runs)."""
    from train.runs import train_shards

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    train_shards(TrainConfig(shards=Path(root), out=Path(out), steps=2, batch_size=2, device="cpu",
                             preset="small", size=32, workers=0, log_every=1, ckpt_every=10))


def test_two_processes_train_a_data_folder_category_after_category(tmp_path):
    """One process group serves every category: leaving and re-joining one per category hung the second."""
    root, out = tmp_path / "data", tmp_path / "runs"
    for name in ("dsa", "dsb"):
        make_dataset(root / name, n=8, shard_size=8, dataset=name)
    ctx = mp.spawn(folder_worker, args=(2, free_port(), str(root), str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("folder training under DDP did not finish (hung at a category change?)")
    models = sorted(out.rglob("model.pt"))
    assert len(models) == 2
    for model in models:  # rank 0 logged each category's two steps once
        assert len((model.parent / "log.jsonl").read_text().splitlines()) == 2


def test_a_cpu_run_joins_with_gloo_even_where_cuda_exists(monkeypatch):
    """--device cpu on a GPU machine: NCCL cannot reduce CPU tensors, so the group must be gloo."""
    import torch.distributed as dist

    from train.loop import setup_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(free_port()), GLOO_SOCKET_IFNAME="lo").items():
        monkeypatch.setenv(key, value)
    assert setup_distributed("cpu") == (0, 1, 0)
    try:
        assert dist.get_backend() == "gloo"
    finally:
        dist.destroy_process_group()

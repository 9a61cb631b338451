"""Timing helpers shared by the benchmark scripts: wait for the device, median wall clock of repeated runs.

CUDA work is asynchronous, so every timed run ends with a synchronize; on the CPU that is a no-op.
"""

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait until every kernel queued on `device` has finished (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: torch.device | str, repeats: int,
                   warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall-clock seconds of `repeats` calls of `fn` after `warmup` untimed ones (kernel selection,
    caches), each call bracketed by a device synchronize; also every run's seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync(device)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs

"""Latency per image of the exported inference graph: PyTorch vs onnxruntime vs OpenVINO on this CPU.

The graph is train.export_graph's (resize, network, softmax, score pooling, thresholds) for a model of the
given preset at 128 and 256 px (random weights: latency does not depend on them), exported to ONNX as
`logical-train export` does; inputs are uint8 RGB images at the model's size. Per case: the median of
`--repeats` timed runs after 2 warm-up runs, divided by the batch size. All runtimes get `--threads` threads.

    .venv/bin/python benchmarks/bench_deploy.py [--presets small] [--sizes 128,256] [--batches 1,8] [--threads N]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from train.export import openvino_runner, torch_runner, write_onnx, write_openvino
from train.export_graph import InferenceGraph
from train.model import LocalizationNet, make_config


def timed(run, batch: np.ndarray, repeats: int) -> float:
    """Median seconds per image of `run(batch)`."""
    for _ in range(2):
        run(batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / len(batch)


def runners(preset: str, size: int, threads: int, folder: Path) -> dict:
    """{runtime: run(batch)} for one model; OpenVINO only when installed."""
    import onnxruntime as ort

    torch.manual_seed(0)
    graph = InferenceGraph(LocalizationNet(make_config(preset, size)).eval(), size, 0.5, 0.5).eval()
    write_onnx(graph, folder / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    out = {"pytorch": torch_runner(graph),
           "onnxruntime": lambda b: session.run(None, {"images": b})}
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out
    write_openvino(folder / "model.onnx", folder / "model.xml")
    out["openvino"] = openvino_runner(folder / "model.xml", threads)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for preset in args.presets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                runs = runners(preset, size, args.threads, Path(tmp))
                for batch_size in (int(b) for b in args.batches.split(",")):
                    batch = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
                    cells = {name: timed(run, batch, args.repeats) * 1000 for name, run in runs.items()}
                    rows.append((preset, size, batch_size, cells))
                    print(preset, size, batch_size, {k: round(v, 2) for k, v in cells.items()}, flush=True)
    names = ["pytorch", "onnxruntime", "openvino"]
    print(f"\nms per image, {args.threads} thread(s), torch {torch.__version__}\n")
    print("| preset | px | batch | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for preset, size, batch_size, cells in rows:
        print(f"| {preset} | {size} | {batch_size} | "
              + " | ".join(f"{cells[n]:.1f}" if n in cells else "–" for n in names) + " |")


if __name__ == "__main__":
    main()

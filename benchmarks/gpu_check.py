"""The GPU path, measured in one process: environment, generator render and fit speed, build (render server
and inline), training (and one torchrun step), evaluation. Prints a table; writes every figure as JSON.

    python benchmarks/gpu_check.py                   # one CUDA GPU, ~8 min: toybox at 256 px, base presets
    python benchmarks/gpu_check.py --n 20000         # a shorter build when time is short
    python benchmarks/gpu_check.py --smoke           # the same code on the CPU at toy sizes (tests use it)

JSON: $OUT/gpu_check.json when OUT is set (the device machine's result folder), else --json (default
runs/gpu_check.json); subprocess logs beside it in gpu_check_logs/. The JSON is rewritten after every step,
so a run cut short still leaves what it measured.

Steps (benchmarks/gpu_steps.py): 1 environment; 2 render throughput of the generator as build runs it
(bf16 autocast + channels_last, batches 32/64/128, median after warm-up), FLOP per image against a big bf16
matmul, bf16 vs fp32 renders; 3 fit-generator steps/s and a short real fit (whose generator the builds
use); 4 `build --render server --workers 16` (--n 50,000) and `--render inline --workers 1` on a slice,
each verified, with the number of samples that really went through the generator; 5 `logical-train` for a
fixed number of steps on the slice's shards (steps/s, loader wait share, peak memory) and one step under
torchrun; 6 `eval`. The big build runs last, with what is left of --budget. Every step checks its own
result; a failure is a failed row with the error, and the next step runs.
Targets (issue 14): render >= 2,000 images/s; build of 50,000 < 2 min; loader wait < 10% of step time.
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import gpu_steps as steps
import torch
from gpu_steps import FULL, REPO, SMOKE, Settings, StepFailed

TARGETS = {  # (step, figure, comparison, value, wording); judged on full runs only
    "render": ("render", "images_per_s", ">=", 2000.0, "generator render >= 2,000 images/s"),
    "build": ("build_server", "samples_per_s", ">=", 50000 / 120, "build of 50,000 in < 2 min (>= 417 samples/s)"),
    "loader": ("train", "loader_wait_share", "<", 0.10, "loader wait < 10% of step time"),
}
TITLES = {"environment": "1 environment", "render": "2 generator render", "fit": "3 fit-generator",
          "build_server": "4 build, render server", "build_inline": "4 build, inline, 1 worker",
          "train": "5 logical-train", "torchrun": "5 torchrun, 1 process", "eval": "6 eval on toybox"}


class Check:
    """Runs the steps in order, records each as a row, and keeps the JSON up to date."""

    def __init__(self, settings: Settings, work: Path, json_path: Path, smoke: bool) -> None:
        self.s, self.work, self.json_path = settings, work, json_path
        self.deadline = time.monotonic() + settings.budget
        self.logs = work / "logs"
        self.results: dict = {"schema": 1, "mode": "smoke" if smoke else "full",
                              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "settings": dataclasses.asdict(settings), "rows": []}

    def left(self, cap: float | None = None) -> float:
        """Seconds left in the budget (at most `cap`)."""
        left = self.deadline - time.monotonic()
        return min(left, cap) if cap is not None else left

    def step(self, name: str, fn: Callable[[], tuple[dict, str]], needs: tuple[str, ...] = ()) -> dict | None:
        """Run one step; its figures (or None when it failed or could not run)."""
        t = time.perf_counter()
        missing = [n for n in needs if n not in self.results]
        try:
            if missing:
                raise StepFailed(f"not run: needs {', '.join(missing)}, which failed")
            if self.left() < 5:
                raise StepFailed("not run: the time budget is spent")
            data, summary = fn()
            row = {"step": name, "ok": True, "summary": summary, "error": None}
            self.results[name] = data
        except Exception as exc:  # a failed step is a row, then the next step runs
            data, row = None, {"step": name, "ok": False, "summary": "", "error": f"{type(exc).__name__}: {exc}"}
        row["seconds"] = round(time.perf_counter() - t, 2)
        self.results["rows"].append(row)
        print(f"[{row['seconds']:7.1f} s] {TITLES[name]}: " + (row["summary"] if row["ok"] else
              "FAILED " + row["error"]), flush=True)
        self.write()
        return data

    def write(self) -> None:
        """The JSON, atomically; with target verdicts and the logs copied beside it."""
        if self.results["mode"] == "full":
            self.results["targets"] = verdicts(self.results)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plain(self.results), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, self.json_path)
        if self.logs.is_dir():
            shutil.copytree(self.logs, self.json_path.parent / "gpu_check_logs", dirs_exist_ok=True)


def plain(obj):
    """`obj` as strict JSON data: numpy scalars as numbers, NaN/inf as None, anything else (paths) as text."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj if obj is None or isinstance(obj, (str, int, bool)) else str(obj)


def verdicts(results: dict) -> dict:
    """Each target: the measured value and whether it is met (None: not measured)."""
    out = {}
    for key, (step, figure, op, goal, wording) in TARGETS.items():
        value = results.get(step, {}).get(figure)
        met = None if value is None else (value >= goal if op == ">=" else value < goal)
        out[key] = {"target": wording, "value": value, "met": met}
    return out


def table(results: dict) -> str:
    """The rows as a markdown table, then the target verdicts."""
    lines = ["| step | result | seconds |", "|---|---|---|"]
    for row in sorted(results["rows"], key=lambda r: list(TITLES).index(r["step"])):
        text = row["summary"] if row["ok"] else "**FAILED**: " + row["error"].splitlines()[0][:200]
        lines.append(f"| {TITLES[row['step']]} | {text} | {row['seconds']:.1f} |")
    lines.append("")
    if "targets" not in results:
        lines.append("- targets: judged on full runs on a GPU only")
    for key, v in results.get("targets", {}).items():
        state = "not measured" if v["met"] is None else ("met" if v["met"] else "MISSED")
        value = "" if v["value"] is None else f" ({v['value']:.4g})"
        lines.append(f"- target {key}, {v['target']}: {state}{value}")
    return "\n".join(lines)


def run(check: Check) -> None:
    """Every step; the small inline build comes first and feeds training, so the 50,000-sample build runs
    last with whatever the budget has left (cut short, it still reports how far it got)."""
    from synth.datasets.toybox import materialise

    s, work, logs = check.s, check.work, check.logs
    toybox = materialise(work / "toybox", seed=0)
    check.step("environment", lambda: steps.environment(s))
    fitted = check.step("fit", lambda: steps.fit(s, toybox, work / "generator.pt"), needs=("environment",))
    generator = Path(fitted["generator"]) if fitted else None
    check.step("render", lambda: steps.render(s, toybox, generator), needs=("environment",))
    inline = check.step("build_inline", lambda: steps.build(s, toybox, generator, work / "inline", logs, "inline",
                                                            s.inline_n, 1, check.left(s.timeout)), needs=("fit",))
    shards = Path(inline["directory"]) if inline else None
    check.step("train", lambda: steps.train(s, shards, work / "run", logs, check.left(s.timeout)),
               needs=("build_inline",))
    check.step("torchrun", lambda: steps.torchrun(s, shards, work / "run-ddp", logs, check.left(s.timeout)),
               needs=("build_inline",))
    trained = check.results.get("train")
    check.step("eval", lambda: steps.evaluate(s, toybox, Path(trained["checkpoint"]), work / "eval", logs,
                                              check.left(s.timeout)), needs=("train",))
    check.step("build_server", lambda: steps.build(s, toybox, generator, work / "server", logs, "server", s.n,
                                                   s.workers, check.left() - 5), needs=("fit",))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, toy sizes, about a minute")
    ap.add_argument("--json", type=Path, default=None,
                    help="where the JSON goes [default: $OUT/gpu_check.json, else runs/gpu_check.json]")
    ap.add_argument("--n", type=int, default=None, help="samples of the server build [full: 50000]")
    ap.add_argument("--inline-n", type=int, default=None, help="samples of the inline build [full: 2000]")
    ap.add_argument("--workers", type=int, default=None, help="build workers of the server build [full: 16]")
    ap.add_argument("--train-steps", type=int, default=None, help="logical-train steps [full: 200]")
    ap.add_argument("--budget", type=float, default=None, help="seconds for everything [full: 470]")
    ap.add_argument("--arch", choices=("paper", "attention", "bottleneck", "composition"), default=None,
                    help="network of the train, torchrun and eval steps [paper]")
    ap.add_argument("--work", type=Path, default=None, help="working folder [default: a temporary one]")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (shards, checkpoints)")
    args = ap.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    overrides = {k: v for k, v in {"n": args.n, "inline_n": args.inline_n, "workers": args.workers,
                                   "train_steps": args.train_steps, "budget": args.budget, "arch": args.arch}.items()
                 if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    if args.json is not None:
        json_path = args.json
    elif os.environ.get("OUT"):
        json_path = Path(os.environ["OUT"]) / "gpu_check.json"
    else:
        json_path = REPO / "runs" / "gpu_check.json"
    if args.smoke:  # one thread per process: a small shared CPU stays responsive (and no OpenMP spin-waits)
        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # the subprocesses
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    check = Check(settings, work.resolve(), json_path.resolve(), args.smoke)
    t = time.perf_counter()
    try:
        run(check)
    finally:
        check.results["seconds"] = round(time.perf_counter() - t, 1)
        check.write()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(check.results))
    print(f"\nJSON: {json_path}")
    failed = [r["step"] for r in check.results["rows"] if not r["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""benchmarks/gpu_check.py: its smoke mode runs every step on the CPU and reports sane figures, and a step
that fails becomes a failed row while the others go on."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STEPS = ["environment", "fit", "render", "build_inline", "train", "torchrun", "eval", "build_server"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_smoke_run_passes_every_step_with_sane_figures(tmp_path):
    out = tmp_path / "out" / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--smoke", "--json", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["step"] for r in result["rows"]] == STEPS
    assert all(r["ok"] and r["error"] is None for r in result["rows"]), result["rows"]
    assert "| 2 generator render |" in proc.stdout and "FAILED" not in proc.stdout
    assert result["mode"] == "smoke" and result["environment"]["bf16"] is True

    render = result["render"]
    assert set(render["batches"]) == {"2", "4"}
    for key in ("images_per_s", "compute_images_per_s", "flop_per_image", "matmul_flop_per_s",
                "matmul_fraction"):
        assert positive(render[key]), key
    assert 1e8 < render["flop_per_image"] < 1e9        # tiny generator at 64 px: ~0.18 GFLOP
    agreement = render["bf16_vs_fp32"]                   # CPU autocast: bf16 really ran, and stays close
    assert 30 < agreement["psnr_db"] < 100 and 0 < agreement["relative_error"] < 0.05

    fit = result["fit"]
    assert positive(fit["steps_per_s"]) and positive(fit["ssim_mean"])
    assert all(math.isfinite(v) for v in fit["losses"].values())

    for name, n in (("build_server", 24), ("build_inline", 8)):
        build = result[name]
        assert build["n"] == n and build["verified"].startswith(f"OK: {n} samples")
        assert positive(build["samples_per_s"]) and 0 < build["render_share"] <= 1
        assert n / 2 <= build["rendered_samples"] <= n   # they went through the generator, not Perlin
    assert result["build_server"]["mode"] == "server" and result["build_inline"]["workers"] == 1

    train = result["train"]
    assert positive(train["steps_per_s"]) and positive(train["images_per_s"])
    assert 0 <= train["loader_wait_share"] <= 1 and math.isfinite(train["final_loss"])
    assert result["torchrun"]["world_size"] == 1 and math.isfinite(result["torchrun"]["loss"])
    ev = result["eval"]
    assert ev["images"] == 68 and positive(ev["inference_s_per_image"])
    assert (out.parent / "gpu_check_logs" / "build-server.cmd").read_text().count("--render server") == 1
    assert not (tmp_path / "work").exists()           # the working folder is removed (no --keep)


def test_a_failed_step_is_a_row_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from gpu_check import Check, table
    from gpu_steps import SMOKE, StepFailed

    check = Check(SMOKE, tmp_path / "work", tmp_path / "check.json", smoke=True)

    def broken():
        raise StepFailed("renders are constant (std 0.000 grey levels)")

    assert check.step("render", broken) is None
    assert check.step("fit", lambda: ({"steps_per_s": 2.0}, "2 steps/s")) == {"steps_per_s": 2.0}
    assert check.step("build_server", lambda: ({}, "never"), needs=("render",)) is None
    rows = json.loads((tmp_path / "check.json").read_text())["rows"]
    assert [(r["step"], r["ok"]) for r in rows] == [("render", False), ("fit", True), ("build_server", False)]
    assert "renders are constant" in rows[0]["error"] and "needs render" in rows[2]["error"]
    text = table(check.results)
    assert "**FAILED**: StepFailed: renders are constant" in text and "| 3 fit-generator | 2 steps/s |" in text

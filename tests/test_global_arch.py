"""The global branch (issue 24): it sees the whole image, the paper's network stays exactly as it was, and
both archs train, resume, evaluate and predict."""

import csv

import pytest
import torch
from click.testing import CliRunner
from test_train import make_dataset, tiny_config

from train.cli import cli
from train.evaluate import evaluate
from train.global_branch import sinusoidal_positions
from train.loop import fit
from train.losses import total_loss
from train.model import (
    COMBINES,
    LocalizationNet,
    ModelConfig,
    combine_outputs,
    load_checkpoint,
    make_config,
    read_checkpoint,
    save_checkpoint,
)
from train.predict import predict

GLOBAL = ("attention", "bottleneck")


def tiny(arch: str, size: int = 32, combine: str | None = None) -> ModelConfig:
    return ModelConfig("small", size, (4, 8, 8), (4, 8, 8), arch,
                       combine or ("seg" if arch == "paper" else "mean+logit"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("arch", ["paper", *GLOBAL])
def test_only_a_global_branch_sees_a_distant_part(arch):
    """Change one quadrant of a 128 px image: the outputs in the opposite corner (52+ px away) move with a
    global branch and stay bit-identical with the paper's network (its receptive field ends sooner). In
    float64, so the untrained branch's small effect (1e-10 to 1e-6) stands far above rounding (~1e-16)."""
    torch.manual_seed(0)
    model = LocalizationNet(tiny(arch, 128)).double().eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = x.clone()
    y[:, :, 64:, 64:] = 1.0 - y[:, :, 64:, 64:]              # the "distant part"
    with torch.no_grad():
        a, b = model(x), model(y)
        pa, pb = model.anomaly_map(x), model.anomaly_map(y)
    near = (..., slice(0, 12), slice(0, 12))
    assert (a["seg"][..., 64:, 64:] - b["seg"][..., 64:, 64:]).abs().max() > 1e-3   # the part itself shows
    if arch == "paper":
        assert torch.equal(a["seg"][near], b["seg"][near]) and torch.equal(pa[near], pb[near])
    else:
        for key in ("seg", "global_map"):                     # the U-Net decodes the branch's features
            assert (a[key][near] - b[key][near]).abs().max() > 1e-12, key
        assert (pa[near] - pb[near]).abs().max() > 1e-12
        assert (a["global_logit"] - b["global_logit"]).abs().max() > 1e-9


def test_paper_checkpoints_keep_todays_format_and_old_ones_load(tmp_path):
    paper = make_config("small", 32)
    assert paper.to_dict() == {"preset": "small", "size": 32, "rec_widths": [16, 32, 64, 64],
                               "seg_widths": [16, 32, 64, 64]}     # no arch field: the format before it
    model = LocalizationNet(paper)
    save_checkpoint(tmp_path / "p.pt", model, paper)
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    assert set(payload) == {"format", "version", "config", "state_dict"} and payload["version"] == 1
    keys = set(payload["state_dict"])
    assert all(k.split(".")[0] in ("reconstruction", "segmentation") for k in keys)
    # a global net holds the paper's modules under the same names, plus its branch
    wide = set(LocalizationNet(make_config("small", 32, "attention")).state_dict())
    assert keys == {k for k in wide if not k.startswith("global_branch.")} and len(wide) > len(keys)
    # an old checkpoint (config without arch) loads as the paper's network, its map the softmax of seg
    loaded, config = load_checkpoint(tmp_path / "p.pt")
    assert loaded.config.arch == "paper" and "arch" not in config
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        prob, image = loaded.scored(x)
        assert image is None and torch.equal(prob, torch.softmax(loaded(x)["seg"], dim=1)[:, 1])


@pytest.mark.parametrize("arch", GLOBAL)
def test_a_global_checkpoint_records_its_arch_and_combine(tmp_path, arch):
    config = make_config("small", 32, arch, "seg+logit")
    save_checkpoint(tmp_path / "g.pt", LocalizationNet(config), config)
    payload = read_checkpoint(tmp_path / "g.pt")
    assert payload["config"]["arch"] == arch and payload["config"]["combine"] == "seg+logit"
    model, _ = load_checkpoint(tmp_path / "g.pt")
    assert model.config == config


def test_bad_arch_or_combine_is_refused():
    with pytest.raises(ValueError, match="unknown arch"):
        make_config("small", 32, "vit")
    with pytest.raises(ValueError, match="does not fit"):
        make_config("small", 32, "paper", "mean")
    with pytest.raises(ValueError, match="does not fit"):
        make_config("small", 32, "attention", "sum")


def test_combine_modes_by_hand():
    seg = torch.zeros(1, 2, 2, 2)
    seg[0, 1, 0, 0] = 10.0                                   # seg: anomalous at (0, 0) only
    glob = torch.zeros(1, 2, 2, 2)                           # global: 0.5 everywhere
    out = {"seg": seg, "global_map": glob, "global_logit": torch.tensor([0.0])}
    s = torch.softmax(seg, dim=1)[0, 1]
    expected = {"seg": s, "mean": (s + 0.5) / 2, "max": torch.clamp(s, min=0.5)}
    for mode in COMBINES:
        prob, image = combine_outputs(out, mode)
        assert torch.allclose(prob[0], expected[mode.split("+")[0]])
        assert (image is None) == (not mode.endswith("+logit"))
        if image is not None:
            assert float(image[0]) == pytest.approx(0.5)


def test_sinusoidal_positions_are_distinct_and_bounded():
    pos = sinusoidal_positions(8, 3, 4, torch.device("cpu"))
    assert pos.shape == (12, 8) and pos.abs().max() <= 1.0
    assert torch.cdist(pos, pos).add(torch.eye(12)).min() > 1e-3     # every place has its own code


@pytest.mark.parametrize("arch", GLOBAL)
def test_global_loss_trains_the_branch(arch):
    torch.manual_seed(0)
    model = LocalizationNet(tiny(arch))
    x = torch.rand(4, 3, 32, 32)
    batch = {"image": x, "normal": x, "jnd": torch.rand(4, 1, 32, 32), "edge": (x[:, :1] > 0.9).float(),
             "mask": torch.zeros(4, 1, 32, 32)}
    batch["mask"][:2, :, 4:12, 4:12] = 1
    terms = total_loss(model(x), batch)
    assert set(terms) == {"img", "jnd", "edge", "seg", "global", "total"}
    parts = sum(float(v.detach()) for k, v in terms.items() if k != "total")
    assert float(terms["total"].detach()) == pytest.approx(parts, rel=1e-5)
    terms["total"].backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("global_branch.")]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["paper", "attention", "composition"])
def test_train_resume_evaluate_predict(arch, tmp_path, toybox_root):
    shards = tmp_path / "ds"
    make_dataset(shards, n=16)
    fit(tiny_config(shards, tmp_path / "run", steps=4, stop_at=2, arch=arch))
    model, path = fit(tiny_config(shards, tmp_path / "run", steps=4, resume=True, arch=arch))
    payload = read_checkpoint(path)
    assert payload["step"] == 4 and payload["config"].get("arch", "paper") == arch
    with pytest.raises(Exception, match="--arch"):          # a run folder holds one arch
        fit(tiny_config(shards, tmp_path / "run", steps=6, resume=True,
                        arch="bottleneck" if arch == "paper" else "paper"))
    result = evaluate(path, "toybox", toybox_root, "bag", tmp_path / "ev", device="cpu", n_heatmaps=1)
    assert result["metrics"]["mean"]["image_auroc"] is not None
    assert (tmp_path / "ev" / "metrics.json").is_file()
    images = sorted((toybox_root / "bag" / "test" / "logical_anomalies").glob("*.png"))[:2]
    rows, _ = predict(path, images, tmp_path / "pr", device="cpu")
    with open(tmp_path / "pr" / "scores.csv") as f:
        assert [float(r["score"]) for r in csv.DictReader(f)] == pytest.approx([r[1] for r in rows], abs=1e-6)
    assert all(0.0 <= r[1] <= 1.0 for r in rows)


def test_cli_arch_option(tmp_path):
    shards = tmp_path / "ds"
    make_dataset(shards, n=8)
    result = CliRunner().invoke(cli, ["--shards", str(shards), "--out", str(tmp_path / "r"), "--steps", "1",
                                      "--batch-size", "4", "--device", "cpu", "--preset", "small", "--size", "32",
                                      "--workers", "0", "--arch", "bottleneck"])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "r" / "model.pt", weights_only=True)["config"]["arch"] == "bottleneck"


@pytest.mark.parametrize("arch", GLOBAL)
def test_a_global_arch_exports_with_its_combine_and_passes_parity(arch, calibrated, toybox_root, tmp_path):
    """The exported graph makes the map and score as the checkpoint's `combine` says: its outputs equal
    train.evaluate.infer's (what eval and predict --checkpoint use) on real images."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    from synth.datasets.images import load_rgb
    from train.calibrate import stored_thresholds
    from train.deploy import onnx_runner, onnx_session, run_batches
    from train.evaluate import infer
    from train.export import export

    torch.manual_seed(0)
    config = tiny(arch, combine="mean+logit")
    path = tmp_path / "model.pt"
    save_checkpoint(path, LocalizationNet(config), config, {"thresholds": stored_thresholds(calibrated[0])})
    meta = export(path, "onnx", tmp_path / "onnx", [toybox_root / "bag" / "test" / "logical_anomalies"])
    assert meta["parity"]["onnxruntime"]["images"] > 0
    model = LocalizationNet(config)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    images = [load_rgb(q) for q in sorted((toybox_root / "bag" / "test" / "logical_anomalies").glob("*.png"))[:4]]
    maps, scores = infer(model.eval(), images, config.size, torch.device("cpu"))
    got = run_batches(onnx_runner(onnx_session(tmp_path / "onnx")), images)
    assert np.abs(got["score"] - scores).max() < 1e-4
    assert np.abs(got["map"] - maps).max() < 1e-4

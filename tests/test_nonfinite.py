"""Non-finite numbers never pass as results: checkpoints holding NaN/inf are refused naming the file, a
model whose maps overflow gets no scores written, and a run whose loss turns NaN stops at that step with
its last good checkpoint kept (localizer and generator)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_train import one_thread  # noqa: F401  (autouse: one torch thread)

from synth.datasets.images import save_image
from synth.errors import CheckpointError, LogicalError
from train.cli import cli
from train.model import LocalizationNet, ModelConfig, read_checkpoint, save_checkpoint

CONFIG = ModelConfig(preset="small", size=32, rec_widths=(4, 8, 8), seg_widths=(4, 8, 8))


def checkpoint_with(tmp_path: Path, edit) -> Path:
    torch.manual_seed(0)
    model = LocalizationNet(CONFIG)
    with torch.no_grad():
        edit(model)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, CONFIG)
    return path


def nan_weight(model: LocalizationNet) -> None:
    model.segmentation.head.weight[0, 0, 1, 1] = float("nan")


def overflowing_head(model: LocalizationNet) -> None:
    """Finite weights whose logits overflow to +-inf: the softmax is NaN."""
    model.segmentation.head.weight[0].fill_(3e38)
    model.segmentation.head.weight[1].fill_(-3e38)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for i in range(2):
        save_image(folder / f"p{i}.png", np.full((40, 40, 3), 60 + 50 * i, np.uint8))
    return folder


def test_eval_and_predict_refuse_a_checkpoint_with_nan_weights(tmp_path, photos, toybox_root):
    ckpt = checkpoint_with(tmp_path, nan_weight)
    with pytest.raises(CheckpointError, match="non-finite"):
        read_checkpoint(ckpt)
    runner = CliRunner()
    out = tmp_path / "pred"
    result = runner.invoke(cli, ["predict", "--checkpoint", str(ckpt), str(photos), "--out", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {ckpt}:" in result.output and "NaN or infinity" in result.output
    assert "segmentation.head.weight" in result.output
    assert not (out / "scores.csv").exists()
    result = runner.invoke(cli, ["eval", "--checkpoint", str(ckpt), "--dataset", "toybox", "--root",
                                 str(toybox_root), "--out", str(tmp_path / "ev"), "--device", "cpu"])
    assert result.exit_code == 1 and f"Error: {ckpt}:" in result.output and "NaN" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "ev" / "metrics.json").exists()


def test_predict_writes_no_scores_when_the_maps_overflow(tmp_path, photos):
    ckpt = checkpoint_with(tmp_path, overflowing_head)
    out = tmp_path / "pred"
    result = CliRunner().invoke(cli, ["predict", "--checkpoint", str(ckpt), str(photos), "--out", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "not finite" in result.output and str(photos / "p0.png") in result.output
    assert not (out / "scores.csv").exists()


def test_generator_with_nan_weights_is_refused_naming_the_file(tmp_path):
    from synth.render.generator import FORMAT, PRESETS, VERSION, GlobalGenerator
    from synth.render.loader import load_generator

    config = PRESETS["tiny"]
    state = GlobalGenerator(config).state_dict()
    next(v for v in state.values() if v.is_floating_point())[0] = float("inf")
    path = tmp_path / "generator.pt"
    torch.save({"format": FORMAT, "version": VERSION, "config": config.to_dict(), "edges": "classic-v1",
                "size": config.size, "state_dict": state, "quality": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: .*non-finite"):
        load_generator(path, device="cpu")
    torch.save({"format": FORMAT, "version": VERSION, "config": config.to_dict(), "edges": "classic-v1",
                "size": config.size, "state_dict": GlobalGenerator(config).state_dict(),
                "quality": {"ssim_mean": float("nan")}}, path)   # a NaN figure would disable collapse rejection
    with pytest.raises(CheckpointError, match=r"non-finite numbers \(NaN or infinity\) in quality.ssim_mean"):
        load_generator(path, device="cpu")


def test_training_stops_at_a_non_finite_loss_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import test_train

    import train.loop as loop

    data = tmp_path / "ds"
    test_train.make_dataset(data)
    calls = {"n": 0}
    real = loop.total_loss

    def diverging(outputs, batch):          # the loss of step 3 turns NaN
        calls["n"] += 1
        losses = real(outputs, batch)
        if calls["n"] == 3:
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(loop, "total_loss", diverging)
    out = tmp_path / "run"
    with pytest.raises(LogicalError, match="training stopped at step 3: the loss or its gradient is not "
                                           r"finite.*keep the last good checkpoint, step 2"):
        loop.fit(test_train.tiny_config(data, out, steps=6, ckpt_every=2))
    payload = read_checkpoint(out / "model.pt")             # loads: finite weights
    assert payload["step"] == 2 and read_checkpoint(out / "last.pt")["step"] == 2


def test_fit_generator_stops_at_a_non_finite_loss(tmp_path, monkeypatch):
    import synth.render.fitting as fitting
    from synth.render.generator import GeneratorConfig
    from synth.render.generator import read_checkpoint as read_generator

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    edges = [(rng.random((32, 32)) > 0.8).astype(np.float32) for _ in range(4)]
    calls = {"n": 0}
    real = fitting.train_step

    def diverging(*args, **kwargs):
        calls["n"] += 1
        losses = real(*args, **kwargs)
        return losses | ({"g_gan": float("nan")} if calls["n"] == 3 else {})

    monkeypatch.setattr(fitting, "train_step", diverging)
    config = GeneratorConfig(ngf=4, n_down=2, n_blocks=1, size=32, ndf=4, n_layers_d=2, num_d=1)
    out = tmp_path / "gen.pt"
    with pytest.raises(LogicalError, match=r"fit-generator stopped at epoch 2, step 3: a loss is not finite "
                                           r"\(g_gan nan.*keep the last periodic checkpoint"):
        fitting.fit_generator(images, edges, config, 4, out, batch_size=2, held_out=0, sample_every=0,
                              checkpoint_every=1, device="cpu", progress=False)
    ckpt = read_generator(out)                # the epoch-1 checkpoint, intact and finite
    assert ckpt["quality"] == {}
    assert fitting.read_train_state(out)["epoch"] == 1

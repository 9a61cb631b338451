"""Option combinations the networks cannot run are refused before any work, with the smallest size that
works (derived from the network's depth); no user mistake ends in a traceback in either CLI."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_train import one_thread  # noqa: F401  (autouse: one torch thread)

from synth.cli import cli as synth_cli
from synth.errors import LogicalError
from train.cli import cli as train_cli
from train.model import PRESETS, LocalizationNet, ModelConfig, check_trainable, min_train_size


def test_smallest_training_size_follows_the_depth():
    assert [min_train_size(PRESETS["base"], b) for b in (1, 2, 8)] == [64, 32, 32]
    assert [min_train_size(PRESETS["small"], b) for b in (1, 2)] == [16, 8]


def train_step(config: ModelConfig, batch: int) -> None:
    model = LocalizationNet(config).train()
    out = model(torch.rand(batch, 3, config.size, config.size))
    out["seg"].sum().backward()


def test_the_derived_minimum_is_what_the_network_really_needs():
    deep = ModelConfig("deep", 32, rec_widths=(2, 2, 2, 2), seg_widths=(2, 2, 2, 2, 2))   # 16x downsampling
    assert min_train_size(deep, 1) == 32
    train_step(deep, 1)                                                   # the minimum runs
    small = ModelConfig("deep", 16, deep.rec_widths, deep.seg_widths)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        train_step(small, 1)                                              # one step below does not
    with pytest.raises(ValueError, match="smallest size that works with --batch-size 1 is 32"):
        check_trainable(small, 1)
    check_trainable(small, 2)
    train_step(small, 2)


def test_train_cli_refuses_base_at_32_px_with_batch_1_before_any_work(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_cli, ["--shards", str(tmp_path / "no-such-dataset"), "--out", str(out),
                                            "--preset", "base", "--size", "32", "--batch-size", "1",
                                            "--device", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "smallest size that works with --batch-size 1 is 64" in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_generator_sizes_refused_with_the_smallest_that_works():
    from synth.render.generator import GlobalGenerator, MultiscaleDiscriminator, config_for
    from synth.render.training import train_step as fit_step

    with pytest.raises(LogicalError, match="smallest size that works is 16"):
        config_for("base", 8)
    with pytest.raises(LogicalError, match="divisible by 2\\*\\*n_down = 8, e.g. 16 or 24"):
        config_for("base", 20)
    c = config_for("tiny", 8)                                            # tiny: 2 downsamplings -> 8 px
    gen, disc = GlobalGenerator(c), MultiscaleDiscriminator(c)
    opts = [torch.optim.Adam(m.parameters()) for m in (gen, disc)]
    losses = fit_step(gen, disc, *opts, torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8) * 2 - 1)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


@pytest.fixture()
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(("which", "args", "message"), [
    ("train", ["--shards", "{ds}", "--out", "{file}", "--preset", "small", "--size", "32", "--steps", "1",
               "--workers", "0", "--device", "cpu"], "{file}: is a file, where a folder is needed"),
    ("synth", ["fit-generator", "--dataset", "toybox", "--root", "{toy}", "--category", "tray", "--size", "32",
               "--epochs", "1", "--device", "cpu", "--out", "{file}/g.pt"], "{file}: is a file"),
    ("synth", ["show", "--dataset", "toybox", "--root", "{toy}", "--size", "0", "--out", "{tmp}/s.png"],
     "'--size': 0 is not in the range x>=16"),
    ("synth", ["build", "--dataset", "toybox", "--root", "{toy}", "--n", "4", "--size", "8", "--out", "{tmp}"],
     "'--size': 8 is not in the range x>=16"),
    ("synth", ["build", "--dataset", "toybox", "--root", "{toy}", "--n", "4", "--size", "18", "--out", "{tmp}"],
     "--size 18: size 18 must be divisible by 2**n_down = 4, e.g. 16 or 20"),
    ("synth", ["pack", "{ds}", "-o", "{file}/x.tar"], "{file}: is a file"),
    ("train", ["eval", "--checkpoint", "{file}", "--dataset", "toybox", "--root", "{toy}", "--device", "cpu"],
     "{file}: not a readable checkpoint"),
])
def test_user_mistakes_are_errors_not_tracebacks(which, args, message, tmp_path, a_file, toybox_root):
    import test_train

    ds = tmp_path / "ds"
    test_train.make_dataset(ds)
    names = {"file": a_file, "toy": toybox_root, "tmp": tmp_path, "ds": ds}
    args = [a.format(**names) for a in args]
    result = CliRunner().invoke(train_cli if which == "train" else synth_cli, args)
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
    assert message.format(**names) in result.output and "Traceback" not in result.output, result.output

"""Shared fixtures: the real test data in ../shared and a session-wide toybox; the hypothesis profiles."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests (tests/test_properties_*.py): a few examples per test in CI (all of them together stay under
# ~60 s on 2 cores), as many as LOGICAL_HYPOTHESIS_EXAMPLES says for a long local run (e.g. 2000).
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=_SLOW_DATA,
                          print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("LOGICAL_HYPOTHESIS_EXAMPLES", "0") or 0) or 25,
                          deadline=None, suppress_health_check=_SLOW_DATA, print_blob=True)
settings.load_profile("long" if os.environ.get("LOGICAL_HYPOTHESIS_EXAMPLES") else "ci")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def hazelnut_root() -> Path:
    """Real photographs in an MVTec-AD-like layout (category `hazelnut`)."""
    root = SHARED / "data" / "hazelnut_toy"
    if not root.is_dir():
        pytest.skip(f"{root} is missing")
    return root


@pytest.fixture(scope="session")
def pidinet_weights() -> Path:
    """The official PiDiNet checkpoint (table5_pidinet.pth)."""
    path = SHARED / "weights" / "table5_pidinet.pth"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def toybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in demo dataset (MVTec LOCO layout, category `tray`), made once per test session."""
    from synth.datasets.toybox import materialise

    return materialise(tmp_path_factory.mktemp("toybox"), seed=0)


@pytest.fixture(scope="session")
def tiny_generator(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real generator fitted on toybox `tray` for one epoch at 64 px: enough to render, small enough for a
    test (shared by the build tests)."""
    import torch

    from synth.render.fitting import fit_for_category

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("gen") / "generator.pt"
    path = fit_for_category("toybox", toybox_root, "tray", size=64, preset="tiny", epochs=1, out=out,
                            device="cpu", progress=False)
    torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real (untrained) localization checkpoint at 32 px, for eval/predict tests."""
    import torch

    from train.model import LocalizationNet, ModelConfig, save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(preset="small", size=32, rec_widths=(4, 8, 8), seg_widths=(4, 8, 8))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, LocalizationNet(config), config)
    return path


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (the machine is shared), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def calibrated(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A small model trained briefly on a Perlin build of toybox/tray at 32 px and calibrated by training
    (on the validation normals the build's manifest names): (model.pt, its thresholds)."""
    import torch

    from synth.build import build
    from train.calibrate import stored_thresholds
    from train.loop import TrainConfig
    from train.runs import train_shards

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("calibrated")
    build("toybox", toybox_root, ["tray"], n=16, shard_size=8, size=64, seed=3, out=work / "data",
          synthesizer="perlin")
    cfg = TrainConfig(shards=work / "data" / "toybox" / "tray", out=work / "run", steps=8, batch_size=4,
                      preset="small", size=32, workers=0, device="cpu", log_every=4)
    [path] = train_shards(cfg, fpr=0.01)
    torch.set_num_threads(threads)
    return path, stored_thresholds(path)

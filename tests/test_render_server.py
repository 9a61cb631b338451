"""The render process: the same images as the in-process generator, clear errors when it cannot serve."""

import pickle
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
import pytest
import torch

from synth.errors import LogicalError
from synth.render.generator import FORMAT, VERSION, GeneratorRenderer, GlobalGenerator, config_for, save_checkpoint
from synth.render.loader import load_generator
from synth.render.server import RenderServer, use_server


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny generator saved as a checkpoint (initial weights are enough to compare renders)."""
    torch.manual_seed(0)
    config = config_for("tiny", 32)
    path = tmp_path_factory.mktemp("gen") / "generator.pt"
    save_checkpoint(path, {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "edges": "classic-v1",
                           "size": 32, "state_dict": GlobalGenerator(config).state_dict(),
                           "quality": {"ssim_p05": 0.5}})
    return path


def test_server_renders_what_the_worker_would(generator_file):
    edges = np.random.default_rng(1).random((5, 32, 32)).astype(np.float32)
    local = load_generator(generator_file, edges="classic", size=32, device="cpu")
    assert isinstance(local, GeneratorRenderer)
    with RenderServer(generator_file, "classic", 32, "cpu") as remote:
        assert remote.identity == local.identity and remote.quality == local.quality
        copy = pickle.loads(pickle.dumps(remote))            # as a worker receives it
        got = copy.render(edges)
        with pytest.raises(AuthenticationError):              # a stranger is turned away ...
            Client(remote.address, authkey=b"wrong key")
        again = copy.render(edges[:2])                        # ... and the server still serves
    assert got.dtype == np.uint8 and got.shape == (5, 32, 32, 3)
    assert np.array_equal(got, local.render(edges))
    assert np.array_equal(again, got[:2])


def test_gone_server_and_bad_checkpoint_are_clear_errors(generator_file, tmp_path):
    with RenderServer(generator_file, "classic", 32, "cpu") as remote:
        pass                                                  # stopped on exit
    with pytest.raises(LogicalError, match="render process .* is gone"):
        remote.render(np.zeros((1, 32, 32), np.float32))
    broken = tmp_path / "generator.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(LogicalError, match="could not load .*generator.pt"):
        with RenderServer(broken, "classic", 32, "cpu"):
            pass
    with pytest.raises(LogicalError, match="could not load .*fitted at 32 px"):
        with RenderServer(generator_file, "classic", 64, "cpu"):
            pass


def test_auto_uses_a_server_only_for_cuda_with_local_workers():
    assert use_server("server", "cpu", "loky") and not use_server("inline", "cuda", "loky")
    assert not use_server("auto", "cpu", "loky")
    assert not use_server("auto", "cuda", "dask")
    assert use_server("auto", "auto", "loky") == torch.cuda.is_available()
    with pytest.raises(ValueError):
        use_server("gpu", "cpu", "loky")

"""The edge-to-image generator: networks, one training step, checkpoints, resume, quality, the CLI."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.errors import CheckpointError
from synth.render.fitting import fit_generator, read_train_state, samples_path, train_state_path
from synth.render.generator import (
    FORMAT,
    VERSION,
    GeneratorConfig,
    GeneratorRenderer,
    GlobalGenerator,
    MultiscaleDiscriminator,
    init_weights,
    read_checkpoint,
    save_checkpoint,
)
from synth.render.loader import load_generator
from synth.render.training import Augment, _batch, augment, train_step

TINY = GeneratorConfig(ngf=8, n_down=1, n_blocks=1, size=32, ndf=8, n_layers_d=2, num_d=2)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs(hazelnut_root: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Eight real hazelnut photos at 32 px with Canny edges (test-only stand-in for synth.features.edges)."""
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:8]
    images = [resize_rgb(load_rgb(p), 32) for p in paths]
    edges = [cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 50, 150).astype(np.float32) / 255
             for im in images]
    return images, edges


def _models(config: GeneratorConfig = TINY, seed: int = 0):
    torch.manual_seed(seed)
    gen, disc = GlobalGenerator(config), MultiscaleDiscriminator(config)
    init_weights(gen)
    init_weights(disc)
    return gen, disc


def _fit(pairs, out: Path, epochs: int, **kwargs) -> Path:
    images, edges = pairs
    kwargs = {"edges_identity": "classic-v1", "batch_size": 2, "held_out": 2, "sample_every": 0,
              "checkpoint_every": 1, "device": "cpu", "progress": False} | kwargs
    return fit_generator(images, edges, TINY, epochs, out, **kwargs)


def test_networks_shapes_and_ranges():
    gen, disc = _models()
    edges = torch.rand(2, 1, 32, 32)
    fake = gen(edges)
    assert fake.shape == (2, 3, 32, 32)
    assert fake.min() >= -1 and fake.max() <= 1 and fake.std() > 0
    feats = disc(edges, fake)
    assert len(feats) == 2 and all(len(f) == TINY.n_layers_d + 2 for f in feats)
    assert feats[0][-1].shape[1] == 1
    assert feats[1][0].shape[-1] < feats[0][0].shape[-1]   # second scale sees a downsampled input
    std = torch.cat([m.weight.flatten() for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]).std()
    assert 0.015 < std < 0.025


def test_render_uint8_batched_and_resized():
    gen, _ = _models()
    renderer = GeneratorRenderer(gen, TINY, "classic-v1", max_batch=2)
    edges = np.random.default_rng(0).random((5, 40, 48)).astype(np.float32)
    out = renderer.render(edges)
    assert out.dtype == np.uint8 and out.shape == (5, 40, 48, 3)
    assert out.std() > 0
    whole = GeneratorRenderer(gen, TINY, "classic-v1", max_batch=16).render(edges)
    np.testing.assert_array_equal(out, whole)       # chunking does not change the result
    same = renderer.render(edges[:, :32, :32].copy())
    assert same.shape == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="B,H,W"):
        renderer.render(edges[0])


def test_bf16_render_stays_close_to_float32():
    """The CUDA default (bf16 autocast) checked on the CPU, where autocast does bf16 too: the renders change,
    but only in the low bits."""
    gen, _ = _models()
    edges = (np.random.default_rng(1).random((3, TINY.size, TINY.size)) > 0.9).astype(np.float32)
    assert GeneratorRenderer(gen, TINY, "classic-v1").bf16 is False       # float32 on the CPU by default
    fp32 = GeneratorRenderer(gen, TINY, "classic-v1", bf16=False).render(edges).astype(np.float64)
    bf16 = GeneratorRenderer(gen, TINY, "classic-v1", bf16=True).render(edges).astype(np.float64)
    assert bf16.shape == fp32.shape and fp32.std() > 5
    diff = bf16 - fp32
    assert np.abs(diff).max() > 0                                           # bf16 was really used
    psnr = 10 * np.log10(255.0**2 / np.mean(diff**2))
    assert psnr > 35 and np.linalg.norm(diff) / np.linalg.norm(fp32) < 0.03


def test_training_steps_lower_the_loss(pairs):
    images, edges = pairs
    gen, disc = _models()
    opt_g = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
    e, r = _batch(list(zip(images[:4], edges[:4], strict=True)), torch.device("cpu"))
    with torch.no_grad():
        l1_before = (gen(e) - r).abs().mean().item()
    first = train_step(gen, disc, opt_g, opt_d, e, r)
    for _ in range(30):
        last = train_step(gen, disc, opt_g, opt_d, e, r)
    with torch.no_grad():
        l1_after = (gen(e) - r).abs().mean().item()
    assert last["g_feat"] < 0.6 * first["g_feat"]
    assert l1_after < 0.5 * l1_before


def test_augment_warps_edges_and_image_alike():
    rng = np.random.default_rng(0)
    edge = np.zeros((64, 64), np.float32)
    cv2.rectangle(edge, (16, 20), (44, 50), 1.0, 1)
    image = np.repeat((edge * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    geometric = Augment(tps=1.0, crop=1.0, dropout=0.0, strokes=0.0)
    for _ in range(5):
        im, ed = augment(image, edge, rng, geometric)
        assert not np.array_equal(ed, edge)
        assert np.abs(im[:, :, 0].astype(np.float32) / 255 - ed).max() < 0.01
    im, ed = augment(image, edge, np.random.default_rng(1), Augment(tps=0, crop=0, dropout=1.0, strokes=0))
    assert np.array_equal(im, image) and (ed <= edge).all() and ed.sum() < edge.sum()
    im, ed = augment(image, edge, np.random.default_rng(1), Augment(tps=0, crop=0, dropout=0, strokes=1.0))
    assert np.array_equal(im, image) and (ed >= edge).all() and ed.sum() > edge.sum()
    a = augment(image, edge, np.random.default_rng(7), Augment())
    b = augment(image, edge, np.random.default_rng(7), Augment())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _payload(gen: GlobalGenerator, config: GeneratorConfig = TINY, edges: str = "classic-v1") -> dict:
    return {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "edges": edges,
            "size": config.size, "state_dict": gen.state_dict(),
            "quality": {"ssim_mean": 0.5, "ssim_std": 0.1, "ssim_p05": 0.3, "ssim_values": [0.4, 0.6]}}


def test_checkpoint_round_trip_renders_identically(tmp_path):
    gen, _ = _models(seed=3)
    path = tmp_path / "g.pt"
    save_checkpoint(path, _payload(gen))
    assert not (tmp_path / "g.pt.tmp").exists()
    edges = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    expected = GeneratorRenderer(gen, TINY, "classic-v1").render(edges)
    loaded = load_generator(path, edges="classic", size=32, device="cpu")
    np.testing.assert_array_equal(loaded.render(edges), expected)
    assert loaded.config == TINY and loaded.edges_identity == "classic-v1"
    assert loaded.identity.startswith("generator-") and len(loaded.identity) == len("generator-") + 12
    assert loaded.quality["ssim_p05"] == 0.3
    assert load_generator(path, device="cpu") is loaded      # cached per process


def test_checkpoint_for_other_edges_or_size_is_refused(tmp_path):
    gen, _ = _models()
    path = tmp_path / "g.pt"
    save_checkpoint(path, _payload(gen))
    load_generator(path, edges="classic-v1", size=32, device="cpu")
    with pytest.raises(CheckpointError, match=r"fitted on classic-v1 edges, but --edges pidinet.*refit"):
        load_generator(path, edges="pidinet", device="cpu")
    with pytest.raises(CheckpointError, match=r"classic-v1 edges, but --edges classic \(classic-v2\)"):
        load_generator(path, edges="classic-v2", device="cpu")
    with pytest.raises(CheckpointError, match=r"fitted at 32 px, but --size 64.*refit"):
        load_generator(path, size=64, device="cpu")


def test_missing_or_corrupt_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt"):
        load_generator(tmp_path / "nothere.pt", device="cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_generator(junk, device="cpu")
    gen, _ = _models()
    good = tmp_path / "good.pt"
    save_checkpoint(good, _payload(gen))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_generator(cut, device="cpu")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": gen.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a logical generator checkpoint"):
        read_checkpoint(foreign)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match=r"list.pt: not a logical generator checkpoint \(holds a list"):
        read_checkpoint(listed)
    future = tmp_path / "future.pt"
    save_checkpoint(future, _payload(gen) | {"version": VERSION + 1})
    with pytest.raises(CheckpointError, match=r"future.pt: .*version 2 is not supported.*fit-generator"):
        read_checkpoint(future)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, _payload(gen, dataclasses.replace(TINY, n_blocks=2)))
    with pytest.raises(CheckpointError, match="do not match"):
        load_generator(wrong, device="cpu")


def _shows(sheet: np.ndarray, tile: np.ndarray) -> bool:
    """Whether `tile` stands somewhere in `sheet`, pixel for pixel."""
    h, w = tile.shape[:2]
    corner = (sheet[: sheet.shape[0] - h + 1, : sheet.shape[1] - w + 1] == tile[0, 0]).all(axis=2)
    return any(np.array_equal(sheet[y:y + h, x:x + w], tile) for y, x in zip(*np.nonzero(corner), strict=True))


def test_fit_writes_quality_samples_and_counters(pairs, tmp_path):
    out = _fit(pairs, tmp_path / "gen.pt", epochs=2)
    ckpt = read_checkpoint(out)
    assert set(ckpt) == {"format", "version", "kind", "config", "edges", "size", "state_dict", "quality",
                         "epochs", "seed"}          # inference only: no discriminator, no optimizer state
    assert ckpt["kind"] == "global"
    state = read_train_state(out)
    per_epoch = 3                                   # 8 images - 2 held out, batch 2
    assert state["epoch"] == 2 and state["step"] == 2 * per_epoch
    assert {"disc", "opt_g", "opt_d"} <= set(state) and out.stat().st_size < train_state_path(out).stat().st_size
    q = ckpt["quality"]
    assert q["on"] == "held-out" and q["n"] == 2 and len(q["ssim_values"]) == 2
    assert -1 <= q["ssim_p05"] <= q["ssim_mean"] <= 1 and q["ssim_std"] >= 0
    renderer = load_generator(out, edges="classic", size=32, device="cpu")
    assert renderer.quality["ssim_mean"] == q["ssim_mean"]
    grid = load_rgb(samples_path(out))              # a contact sheet: rows of edges | generated | real
    images, edges = pairs
    shown = [i for i, im in enumerate(images) if _shows(grid, im)]
    assert len(shown) == 2                          # the two held-out normals, no training image
    for i in shown:
        assert _shows(grid, renderer.render(edges[i][None])[0])


def test_resume_equals_uninterrupted_training(pairs, tmp_path):
    straight = read_checkpoint(_fit(pairs, tmp_path / "a.pt", epochs=2))
    half = _fit(pairs, tmp_path / "b.pt", epochs=2, stop_after=1)
    first = read_checkpoint(half)
    assert read_train_state(half)["epoch"] == 1 and read_train_state(half)["step"] == 3
    assert first["quality"] == {}
    resumed = read_checkpoint(_fit(pairs, half, epochs=2, resume=True))
    assert read_train_state(half)["epoch"] == 2 and read_train_state(half)["step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert any(not torch.equal(first["state_dict"][k], v) for k, v in resumed["state_dict"].items())
    assert resumed["quality"]["ssim_values"] == straight["quality"]["ssim_values"]


def test_resume_refuses_other_settings(pairs, tmp_path):
    out = _fit(pairs, tmp_path / "c.pt", epochs=1)
    images, edges = pairs
    with pytest.raises(CheckpointError, match="--resume"):
        fit_generator(images, edges, dataclasses.replace(TINY, ngf=4), 2, out, edges_identity="classic-v1",
                      resume=True, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="fitted on classic-v1 edges"):
        _fit(pairs, out, epochs=2, resume=True, edges_identity="pidinet-0123456789ab")
    train_state_path(out).unlink()                  # the inference checkpoint alone cannot be resumed
    with pytest.raises(CheckpointError, match=r"no training state next to .*c\.pt: cannot resume"):
        _fit(pairs, out, epochs=2, resume=True)


def test_cli_fits_a_category(hazelnut_root, tmp_path):
    if not hasattr(pytest.importorskip("synth.datasets"), "open_dataset"):
        pytest.skip("synth.datasets.open_dataset is not written yet")
    from synth.cli import cli

    out = tmp_path / "gen.pt"
    args = ["fit-generator", "--dataset", "mvtec", "--root", str(hazelnut_root), "--category", "hazelnut",
            "--size", "32", "--epochs", "1", "--batch-size", "8", "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "SSIM" in result.output
    ckpt = read_checkpoint(out)
    assert ckpt["edges"] == "classic-v2" and ckpt["size"] == 32 and read_train_state(out)["epoch"] == 1
    again = CliRunner().invoke(cli, args + ["--resume", "--size", "64"])
    assert again.exit_code == 1 and "Error:" in again.output and "--resume" in again.output

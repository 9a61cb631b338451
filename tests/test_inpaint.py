"""The inpainting generator kind: renders equal the normal image outside the hole bit for bit, the checkpoint
records its kind (old ones load as global), fitting draws edit-sized holes, and the pipeline renders R_A and
R_N on each sample's own hole in one call."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.cli import cli
from synth.datasets import open_dataset
from synth.datasets.images import load_rgb, resize_rgb
from synth.edit.compose import collapsed, edit_hole, feather_support
from synth.edit.strategies import KIND_OF, STRATEGIES
from synth.features.edges import get_extractor
from synth.features.regions import arbitrary_region
from synth.pipeline import SynthConfig, make_samples, prepare_source
from synth.render.fitting import samples_path
from synth.render.generator import (
    GeneratorConfig,
    GeneratorRenderer,
    GlobalGenerator,
    init_weights,
    read_checkpoint,
    save_checkpoint,
)
from synth.render.holes import draw_hole, hole_source, jitter_inside, training_sample
from synth.render.inpaint import InpaintRenderer, inpaint_config
from synth.render.loader import load_generator
from synth.render.training import Augment

TINY = GeneratorConfig(ngf=8, n_down=1, n_blocks=1, size=32, ndf=8, n_layers_d=2, num_d=2)
CATEGORY = "tray"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _renderer(config: GeneratorConfig = TINY, seed: int = 0) -> InpaintRenderer:
    torch.manual_seed(seed)
    config = inpaint_config(config)
    gen = GlobalGenerator(config)
    init_weights(gen)
    return InpaintRenderer(gen, config, "classic-v1")


def _holes(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([arbitrary_region(shape, np.ones(shape, bool), rng) for _ in range(n)])


@pytest.fixture(scope="module")
def inpaint_generator(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real inpainting generator fitted for one epoch at 64 px on toybox, through the CLI."""
    out = tmp_path_factory.mktemp("inpaint") / "generator.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = CliRunner().invoke(cli, ["fit-generator", "--dataset", "toybox", "--root", str(toybox_root),
                                      "--category", CATEGORY, "--size", "64", "--epochs", "1", "--kind",
                                      "inpaint", "--device", "cpu", "--out", str(out)])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("size", [32, 48])      # at the network's size, and resized to it and back
def test_render_equals_the_normal_outside_the_hole_bit_for_bit(size):
    renderer = _renderer()
    rng = np.random.default_rng(1)
    normals = rng.integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    edges = rng.random((5, size, size)).astype(np.float32)
    holes = _holes((size, size), 5, seed=2)
    out = renderer.render(edges, normals, holes)
    assert out.dtype == np.uint8 and out.shape == normals.shape
    outside = ~holes
    np.testing.assert_array_equal(out[outside], normals[outside])
    assert (out[holes] != normals[holes]).any(axis=-1).mean() > 0.9   # the hole is repainted
    other = renderer.render(1.0 - edges, normals, holes)               # the edges steer the hole only
    np.testing.assert_array_equal(other[outside], normals[outside])
    assert (other[holes] != out[holes]).any()
    with pytest.raises(ValueError, match="holes"):
        renderer.render(edges, normals)


def test_checkpoint_records_its_kind_and_old_ones_load_as_global(tmp_path):
    renderer = _renderer(seed=3)
    payload = {"format": "logical-generator", "version": 1, "config": renderer.config.to_dict(),
               "edges": "classic-v1", "size": 32, "state_dict": renderer.model.state_dict(), "kind": "inpaint",
               "quality": {"ssim_mean": 0.9, "ssim_std": 0.05, "ssim_p05": 0.8, "within": "hole"}}
    save_checkpoint(tmp_path / "inpaint.pt", payload)
    loaded = load_generator(tmp_path / "inpaint.pt", edges="classic", size=32, device="cpu")
    assert isinstance(loaded, InpaintRenderer) and loaded.kind == "inpaint"
    rng = np.random.default_rng(0)
    normals = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    edges, holes = rng.random((2, 32, 32)).astype(np.float32), _holes((32, 32), 2, seed=4)
    np.testing.assert_array_equal(loaded.render(edges, normals, holes), renderer.render(edges, normals, holes))

    torch.manual_seed(0)
    gen = GlobalGenerator(TINY)
    old = {"format": "logical-generator", "version": 1, "config": TINY.to_dict(), "edges": "classic-v1",
           "size": 32, "state_dict": gen.state_dict()}                 # written before kinds existed
    save_checkpoint(tmp_path / "old.pt", old)
    assert read_checkpoint(tmp_path / "old.pt")["kind"] == "global"
    legacy = load_generator(tmp_path / "old.pt", device="cpu")
    assert type(legacy) is GeneratorRenderer and legacy.kind == "global"

    from synth.errors import CheckpointError

    save_checkpoint(tmp_path / "odd.pt", old | {"kind": "inpaint"})    # 1 input channel cannot inpaint
    with pytest.raises(CheckpointError, match="odd.pt.*inconsistent"):
        load_generator(tmp_path / "odd.pt", device="cpu")
    save_checkpoint(tmp_path / "new.pt", old | {"kind": "outpaint"})
    with pytest.raises(CheckpointError, match="new.pt.*unknown generator kind 'outpaint'"):
        load_generator(tmp_path / "new.pt", device="cpu")


def test_training_holes_are_edit_regions_and_image_and_edges_jitter_together_only_inside(toybox_root):
    path = open_dataset("toybox", toybox_root).train_images(CATEGORY)[0]
    image = resize_rgb(load_rgb(path), 64)
    edge = get_extractor("classic")(image)
    foreground, regions = hole_source(image, edge)
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(8):
        hole = draw_hole(edge, foreground, regions, rng)
        assert hole.dtype == bool and hole.any()
        areas.append(hole.mean())
    assert 0.003 < np.median(areas) < 0.3                              # edit-sized: neither a speck nor half
    no_geometry = Augment(tps=0.0, crop=0.0, dropout=0.0, strokes=0.0)
    im, ed, hole = training_sample(image, edge, foreground, regions, np.random.default_rng(5), no_geometry)
    np.testing.assert_array_equal(im[~hole], image[~hole])              # image and edges change only in
    np.testing.assert_array_equal(ed[~hole], edge[~hole])                # the hole
    assert not np.array_equal(ed[hole], edge[hole]) and not np.array_equal(im[hole], image[hole])


def test_jitter_moves_the_target_with_its_edges():
    """The target inside the hole must show what the jittered edges say (warping the edges alone taught the
    network to ignore them): a bar's pixels and its edge map end up in the same place."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 28:36] = 255                                                # a vertical bar
    edge = np.zeros((64, 64), np.float32)
    edge[:, 28:36] = 1.0                                                 # "edges" = the bar itself, to compare
    hole = np.zeros((64, 64), bool)
    hole[8:56, 16:48] = True
    im, ed = jitter_inside(image, edge, hole, np.random.default_rng(3), shift=0.08)
    np.testing.assert_array_equal(im[~hole], image[~hole])
    np.testing.assert_array_equal(ed[~hole], edge[~hole])
    moved = (ed > 0.5) != (edge > 0.5)
    assert moved[hole].mean() > 0.02                                     # the warp really moved the bar
    agree = (im[..., 0] > 127) == (ed > 0.5)
    assert agree[hole].mean() > 0.99                                     # and the target moved with it


def test_collapse_gate_inside_the_hole():
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    hole = _holes((64, 64), 1, seed=1)[0]
    gate = {"ssim_p05": 0.8, "within": "hole"}
    assert not collapsed(normal, normal, gate, within=hole)
    broken = normal.copy()
    broken[hole] = 128
    assert collapsed(broken, normal, gate, within=hole)
    # on the whole image the same damage hides among the untouched pixels
    assert not collapsed(broken, normal, {"ssim_p05": 1.0 - 3 * hole.mean()})


def test_fitted_checkpoint_has_hole_quality_and_samples(inpaint_generator):
    ckpt = read_checkpoint(inpaint_generator)
    assert ckpt["kind"] == "inpaint" and ckpt["config"].in_ch == 5
    quality = ckpt["quality"]
    assert quality["within"] == "hole" and quality["on"] == "validation" and quality["n"] >= 2
    assert 0.0 < quality["ssim_p05"] <= quality["ssim_mean"] < 1.0 and quality["psnr_mean"] > 5.0
    assert load_rgb(samples_path(inpaint_generator)).shape[1] > 4 * 64


def test_samples_render_ra_and_rn_on_the_same_hole_in_one_call(toybox_root, inpaint_generator):
    renderer = load_generator(inpaint_generator, edges="classic", size=64, device="cpu")
    paths = open_dataset("toybox", toybox_root).train_images(CATEGORY)[:8]
    sources = [prepare_source(p, 64, get_extractor("classic"), renderer) for p in paths]
    assert all(s.render is None for s in sources)             # nothing cached: R_N depends on the hole
    calls = []

    def render(edges, normals, holes):
        calls.append((edges, normals, holes))
        return renderer.render(edges, normals, holes)

    config = SynthConfig(strategies=("remove", "merge"), strategy_kinds=tuple((s, KIND_OF[s]) for s in STRATEGIES))
    made = list(make_samples(sources, range(6), 5, CATEGORY, config, render, Counter(), renderer.quality,
                             kind="inpaint"))
    edges, normals, holes = calls[0]
    k = len(edges) // 2
    np.testing.assert_array_equal(holes[:k], holes[k:])
    np.testing.assert_array_equal(normals[:k], normals[k:])
    assert any(np.array_equal(edges[k], s.edge) for s in sources)   # second half: the original edges
    for plan, composed in made:
        src = sources[plan.source]
        hole = edit_hole(plan.edit.region)
        assert composed.mask.any() and not (composed.mask & ~hole).any()
        changed = (composed.anomaly != src.image).any(-1)
        assert not (changed & ~feather_support(composed.mask, 2)).any()   # honest: nothing beyond the feather


def test_show_draws_a_sheet_with_an_inpainting_generator(toybox_root, inpaint_generator, tmp_path):
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(cli, ["show", "--dataset", "toybox", "--root", str(toybox_root), "--n", "2",
                                      "--size", "64", "--strategies", "remove", "--generator",
                                      str(inpaint_generator), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "STAND-IN" not in result.output
    assert load_rgb(out).shape[1] == 5 * 64 + 4 * 2

"""`--regions DIR`: part label images replace the classical semantic regions in build and show."""

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from synth.build import build
from synth.cli import cli
from synth.datasets import open_dataset
from synth.datasets import toybox_draw as draw
from synth.datasets.part_labels import read_part_labels
from synth.datasets.toybox_scene import drawing
from synth.datasets.toybox_tray import scene_for
from synth.edit.geometry import dilate
from synth.errors import DatasetError
from synth.pipeline import plan_sample
from synth.preview import strategy_config
from synth.sources import close_stores, open_store

SIZE = 64
LABEL = 7  # any value: labels need not be 1..K in order


def write_label(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", labels)
    assert ok
    path.write_bytes(data.tobytes())


def block_labels(index: int) -> np.ndarray:
    """uint16 (256, 320): only the toybox block of train image `index`, labelled LABEL (the photo's size)."""
    scene = scene_for(0, "train", index)
    block = next(p for p in scene.parts if p.kind == "block")
    return draw.footprint(drawing(scene, block)).astype(np.uint16) * LABEL


@pytest.fixture(scope="module")
def labels_dir(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labels")
    for path in open_dataset("toybox", toybox_root).train_images("tray"):
        write_label(folder / f"{path.stem}.png", block_labels(int(path.stem)))
    return folder


def _build(root: Path, out: Path, regions: Path | None) -> Path:
    build("toybox", root, ["tray"], n=4, shard_size=4, size=SIZE, out=out, synthesizer="perlin", regions=regions)
    close_stores()
    return out / "toybox" / "tray" / "sources.h5"


def _stems(sources: Path) -> list[int]:
    with h5py.File(sources) as f:
        return [int(Path(n.decode() if isinstance(n, bytes) else n).stem) for n in f["path"][:]]


def _block(stem: int) -> np.ndarray:
    return cv2.resize(block_labels(stem), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)


def test_labels_become_the_regions_and_edits_land_inside_them(toybox_root, labels_dir, tmp_path):
    given = _build(toybox_root, tmp_path / "given", labels_dir)
    stems = _stems(given)
    with h5py.File(given) as f:
        regions = f["regions"][:]
    for k in (0, 5, 17):
        np.testing.assert_array_equal(regions[k], _block(stems[k]))
    pad = max(2, round(3 * SIZE / 256))
    for path, label in ((given, True), (_build(toybox_root, tmp_path / "classic", None), False)):
        store, stems = open_store(path), _stems(path)
        outside = 0
        for i in range(24):
            plan = plan_sample(store, i, 0, "tray", strategy_config("remove"))
            assert plan.edit is not None
            block = dilate(_block(stems[plan.source]) > 0, 2 * pad + 1)
            outside += int((plan.edit.region & ~block).any())
        close_stores()
        if label:
            assert outside == 0  # every edit takes (a piece of) the labelled block
        else:
            assert outside >= 12  # the classical regions are all the parts: most edits are elsewhere


def test_changed_labels_remake_the_sources(toybox_root, labels_dir, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    for f in labels_dir.iterdir():
        (labels / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    first = _build(toybox_root, out, labels)
    stem = f"{_stems(first)[0]:03d}"
    with h5py.File(first) as f:
        before = f["regions"][0].copy()
    write_label(labels / f"{stem}.png", (block_labels(int(stem)) > 0).astype(np.uint16) * 3)  # relabelled
    with h5py.File(_build(toybox_root, out, labels)) as f:
        after = f["regions"][0]
    assert set(np.unique(before)) == {0, LABEL} and set(np.unique(after)) == {0, 3}


def test_missing_missized_or_colour_labels_are_clear_errors(toybox_root, labels_dir, tmp_path):
    photos = open_dataset("toybox", toybox_root).train_images("tray")
    labels = tmp_path / "labels"
    labels.mkdir()
    for f in labels_dir.iterdir():
        (labels / f.name).write_bytes(f.read_bytes())
    victim = labels / f"{photos[3].stem}.png"
    victim.unlink()
    base = ["--dataset", "toybox", "--root", str(toybox_root), "--size", str(SIZE), "--regions", str(labels)]
    runner = CliRunner()
    for command in (["build", "--n", "4", "--synthesizer", "perlin", "--out", str(tmp_path / "o")],
                    ["show", "--n", "1", "--out", str(tmp_path / "s.png")]):
        result = runner.invoke(cli, [command[0], *base, *command[1:]])
        assert result.exit_code == 1 and "Error:" in result.output, result.output
        assert str(victim) in result.output and "Traceback" not in result.output
    write_label(victim, np.zeros((256, 256), np.uint16))  # square: made for another picture
    with pytest.raises(DatasetError, match=f"{victim.name}.*256x256.*320x256"):
        read_part_labels(victim, (256, 320), SIZE)
    write_label(victim, np.zeros((256, 320, 3), np.uint8))
    with pytest.raises(DatasetError, match=f"{victim.name}.*single-channel"):
        read_part_labels(victim, (256, 320), SIZE)


def test_show_uses_the_labels(toybox_root, labels_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # stand-in renderer
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(cli, ["show", "--dataset", "toybox", "--root", str(toybox_root), "--n", "2",
                                      "--size", str(SIZE), "--strategies", "remove", "--regions", str(labels_dir),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()

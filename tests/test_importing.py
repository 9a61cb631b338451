"""`logical-synth import`: labelled folders and the toybox oracle as generated datasets (synth/importing.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.cli import cli
from synth.datasets.images import resize_rgb, save_image
from synth.errors import DatasetError, ImageError
from synth.importing import labelled_folder, oracle_defects, oracle_sample, toybox_oracle
from synth.store.reader import GeneratedDataset
from synth.store.schema import HAS_NORMAL, shard_name
from train.data import ShardDataset, to_float
from train.losses import edge_loss, reconstruction_loss, total_loss

SIZE = 32


def _folder(root: Path, names: list[str], normals: set[str], seed: int = 0) -> dict[str, tuple]:
    """A labelled folder of random SIZE x SIZE images; {name: (anomaly, mask bool, normal or None)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        normal = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), bool)
        y, x = rng.integers(0, SIZE - 8, 2)
        mask[y:y + 8, x:x + 6] = True
        anomaly = normal.copy()
        anomaly[mask] = 255 - anomaly[mask]
        save_image(root / "anomaly" / f"{name}.png", anomaly)
        save_image(root / "mask" / f"{name}.png", mask.astype(np.uint8) * 255)
        if name in normals:
            save_image(root / "normal" / f"{name}.png", normal)
        out[name] = (anomaly, mask, normal if name in normals else None)
    return out


def test_import_round_trip_pixel_for_pixel(tmp_path):
    made = _folder(tmp_path / "mine", ["a", "b", "c"], {"a", "b", "c"})
    directory = labelled_folder(tmp_path / "mine", tmp_path / "out", SIZE, shard_size=2)
    assert directory == tmp_path / "out" / "import" / "mine"
    ds = GeneratedDataset(directory)
    assert len(ds) == 3 and ds.source_count() == 3
    for i, name in enumerate(sorted(made)):
        anomaly, mask, normal = made[name]
        s = ds[i]
        np.testing.assert_array_equal(s.anomaly, anomaly)
        np.testing.assert_array_equal(s.mask, np.where(mask, 255, 0))
        np.testing.assert_array_equal(s.normal, normal)
        assert s.meta["has_normal"] is True and s.meta["strategy"] == "import" and s.meta["kind"] == "logical"
    with h5py.File(directory / shard_name(0), "r") as f:
        assert HAS_NORMAL not in f            # every sample has its normal: the plain schema


def test_import_without_normals_masks_the_reconstruction(tmp_path):
    made = _folder(tmp_path / "mine", ["a", "b", "c", "d"], {"b"})
    directory = labelled_folder(tmp_path / "mine", tmp_path / "out", SIZE, kind="structural")
    ds = GeneratedDataset(directory)
    assert [ds[i].meta["has_normal"] for i in range(4)] == [False, True, False, False]
    np.testing.assert_array_equal(ds[0].normal, made["a"][0])     # the slot holds the anomaly image itself
    assert list(ds.true_normal_sources()) == [1]
    train = ShardDataset(directory, SIZE, normal_fraction=0.0)
    items = [train[i] for i in range(4)]
    assert [int(it["has_normal"]) for it in items] == [0, 1, 0, 0]
    assert list(train.normal_sources) == [1]
    batch = to_float({k: torch.stack([it[k] for it in items]) for k in items[0]})
    g = torch.Generator().manual_seed(0)
    out = {"image": torch.rand(4, 3, SIZE, SIZE, generator=g), "jnd": torch.rand(4, 1, SIZE, SIZE, generator=g),
           "edge_logits": torch.randn(4, 1, SIZE, SIZE, generator=g), "seg": torch.randn(4, 2, SIZE, SIZE, generator=g)}
    none = {k: v[[0, 2]] for k, v in batch.items()}
    terms = total_loss({k: v[[0, 2]] for k, v in out.items()}, none)
    assert terms["img"].item() == 0.0 and terms["jnd"].item() == 0.0 and terms["edge"].item() == 0.0
    assert terms["seg"].item() > 0
    mixed = total_loss(out, batch)       # one kept sample of four: its terms, a quarter weight
    assert mixed["img"].item() == pytest.approx(0.25 * reconstruction_loss(out["image"][1:2], batch["normal"][1:2]))
    assert mixed["edge"].item() == pytest.approx(0.25 * edge_loss(out["edge_logits"][1:2], batch["edge"][1:2]))
    full = total_loss(out, {**batch, "has_normal": torch.ones(4)})
    assert full["img"].item() == pytest.approx(reconstruction_loss(out["image"], batch["normal"]).item())


def test_normal_items_come_only_from_true_normals(tmp_path):
    made = _folder(tmp_path / "mine", ["a", "b", "c"], {"c"})
    train = ShardDataset(labelled_folder(tmp_path / "mine", tmp_path / "out", SIZE), SIZE, normal_fraction=1.0)
    for i in range(6):
        item = train[i]
        np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), made["c"][2])
        assert int(item["mask"].sum()) == 0 and int(item["has_normal"]) == 1


@pytest.mark.parametrize("problem", ["mask_without_image", "image_without_mask", "size", "normal_size"])
def test_import_errors_name_the_file(tmp_path, problem):
    root = tmp_path / "mine"
    _folder(root, ["a", "b"], {"a", "b"})
    if problem == "mask_without_image":
        bad = root / "mask" / "zz.png"
        save_image(bad, np.zeros((SIZE, SIZE), np.uint8))
    elif problem == "image_without_mask":
        bad = root / "anomaly" / "zz.png"
        save_image(bad, np.zeros((SIZE, SIZE, 3), np.uint8))
    else:
        bad = root / ("mask" if problem == "size" else "normal") / "b.png"
        save_image(bad, np.zeros((SIZE, SIZE + 3, 3), np.uint8))
    with pytest.raises((DatasetError, ImageError), match=str(bad)):
        labelled_folder(root, tmp_path / "out", SIZE)
    result = CliRunner().invoke(cli, ["import", "--from", str(root), "--size", str(SIZE), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code != 0 and str(bad) in result.output and "Traceback" not in result.output


def test_import_needs_one_source(tmp_path):
    result = CliRunner().invoke(cli, ["import", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of" in result.output


@pytest.mark.parametrize("category", ["tray", "bag", "bottle"])
def test_oracle_twin_differs_only_inside_its_mask(category):
    logical, structural = oracle_defects(category)
    names = logical + structural
    for index in (0, 1, len(names) - 1):
        s = oracle_sample(category, 3, index)
        assert s.defect == names[index % len(names)] and s.kind == ("logical" if s.defect in logical else "structural")
        assert s.anomaly.shape == s.normal.shape == (256, 320, 3) and s.mask.dtype == bool and s.mask.any()
        near = cv2.dilate(s.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0     # the mask dilated 2 px
        diff = np.abs(s.anomaly.astype(int) - s.normal.astype(int)).max(axis=2)
        assert diff[s.mask].max() > 2                      # the defect shows
        if category == "bottle":       # tray and bag: also a soft shadow of a part that came or went (docstring)
            assert diff[~near].max() <= 2


def test_oracle_dataset_pairs_each_defect_with_its_twin(tmp_path):
    directory = toybox_oracle(tmp_path, "bag", 6, seed=1, size=SIZE, shard_size=4)
    assert directory == tmp_path / "toybox-oracle" / "bag"
    ds = GeneratedDataset(directory)
    logical, structural = oracle_defects("bag")
    for i in range(6):
        twin, s = oracle_sample("bag", 1, i), ds[i]
        np.testing.assert_array_equal(s.normal, resize_rgb(twin.normal, SIZE))
        np.testing.assert_array_equal(s.anomaly, resize_rgb(twin.anomaly, SIZE))
        want = cv2.resize(twin.mask.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
        np.testing.assert_array_equal(s.mask > 0, want)
        assert s.meta["strategy"] == (logical + structural)[i % 5] and s.meta["has_normal"] is True
    assert ds.manifest["dataset"] == "toybox" and ds.manifest["counts"]["samples"] == 6


def test_mvtec_export_leaves_anomaly_only_sources_out_of_train_good(tmp_path):
    from synth.store.export import export_mvtec

    _folder(tmp_path / "mine", ["a", "b", "c"], {"b"})
    out = export_mvtec(labelled_folder(tmp_path / "mine", tmp_path / "out", SIZE), tmp_path / "mvtec")
    assert sorted(p.name for p in (out / "train" / "good").iterdir()) == ["001.png"]
    assert len(list((out / "test" / "import").iterdir())) == 3


def test_hf_export_leaves_normal_null_where_an_import_had_none(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from synth.store.export_hf import export_hf

    made = _folder(tmp_path / "mine", ["a", "b", "c"], {"b"})
    out = export_hf(labelled_folder(tmp_path / "mine", tmp_path / "out", SIZE), tmp_path / "hf",
                    cache_dir=tmp_path / "cache")
    table = pq.read_table(sorted((out / "data").glob("*.parquet"))).to_pylist()
    assert [row["normal"] is None for row in table] == [True, False, True]      # a, b, c in name order
    decoded = cv2.imdecode(np.frombuffer(table[1]["normal"]["bytes"], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decoded, made["b"][2])

"""Training: the shard loader, a falling loss, checkpoint round trip, exact resume, the CLI's refusals."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.errors import CheckpointError
from synth.store.manifest import write_manifest
from synth.store.schema import JND_SCALE, SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources
from train.cli import cli
from train.data import JND_UNIT, ShardDataset, to_float
from train.loop import TrainConfig, fit
from train.losses import total_loss
from train.model import LocalizationNet, ModelConfig, load_checkpoint, read_checkpoint, save_checkpoint

TINY = ModelConfig("tiny", 32, rec_widths=(4, 8), seg_widths=(4, 8))


def make_dataset(directory: Path, n: int = 16, size: int = 32, sources: int = 4, shard_size: int = 8,
                 seed: int = 0, dataset: str = "folder") -> dict:
    """A small generated dataset: blob pictures, each sample one source with a bright square pasted in."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    images = np.zeros((sources, size, size, 3), np.uint8)
    for s in range(sources):
        images[s] = rng.integers(40, 120, 3)
        for _ in range(3):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(images[s], centre, size // 6, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    edge = np.stack([cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 20, 60) for im in images])
    jnd = rng.integers(0, 120, (sources, size, size), dtype=np.uint8)
    ones = np.ones((sources, size, size), np.uint8)
    attrs = {"size": size, "dataset": dataset, "category": "c"}
    write_sources(directory / SOURCES, images, jnd, edge, ones, ones.astype(np.uint16), images,
                  [f"good/{s}.png" for s in range(sources)], attrs)
    samples = []
    for k in range((n + shard_size - 1) // shard_size):
        with ShardWriter(directory / shard_name(k), k * shard_size, shard_size, size, size, ["square"]) as w:
            for _ in range(k * shard_size, min(n, (k + 1) * shard_size)):
                s = int(rng.integers(sources))
                x, y = (int(v) for v in rng.integers(0, size - 8, 2))
                r = int(rng.integers(4, 8))
                mask = np.zeros((size, size), np.uint8)
                mask[y:y + r, x:x + r] = 1
                anomaly = images[s].copy()
                anomaly[mask > 0] = 255
                w.append(anomaly, mask, s, 1, 0, 0, (x, y, x + r, y + r))
                samples.append((anomaly, mask, s))
    write_manifest(directory, {"dataset": dataset, "category": "c", "licence": "test", "config": {},
                               "seed": seed, "n": n, "shard_size": shard_size, "counts": {"samples": n}})
    return {"images": images, "jnd": jnd, "edge": edge, "samples": samples}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("ds") / "set"
    return directory, make_dataset(directory)


def tiny_config(shards: Path, out: Path, **kw) -> TrainConfig:
    options = dict(shards=shards, out=out, steps=4, batch_size=4, device="cpu", preset="small", size=32,
                   workers=0, seed=0, log_every=1, ckpt_every=2)
    options.update(kw)
    return TrainConfig(**options)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the test machines' few cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_items_are_the_stored_samples(dataset):
    directory, made = dataset
    ds = ShardDataset(directory, 32, normal_fraction=0.0)
    batch = to_float({k: v[None] for k, v in ds[3].items()})
    anomaly, mask, s = made["samples"][3]
    image = torch.from_numpy(anomaly).permute(2, 0, 1).float() / 255
    assert torch.allclose(batch["image"][0], image, atol=1e-6)
    assert torch.equal(batch["mask"][0, 0], torch.from_numpy(mask).float())
    normal = torch.from_numpy(made["images"][s]).permute(2, 0, 1).float() / 255
    assert torch.allclose(batch["normal"][0], normal, atol=1e-6)
    jnd = torch.from_numpy(made["jnd"][s]).float() / (JND_SCALE * JND_UNIT)
    assert torch.allclose(batch["jnd"][0, 0], jnd)
    assert torch.equal(batch["edge"][0, 0], torch.from_numpy(made["edge"][s]).float() / 255)


def test_normal_mixing_is_deterministic_and_near_the_fraction(dataset):
    directory, made = dataset
    ds = ShardDataset(directory, 32, normal_fraction=0.5, seed=3)
    normal = [int(ds[(e, i)]["mask"].sum() == 0) for e in range(8) for i in range(len(ds))]
    assert 0.35 < np.mean(normal) < 0.65
    again = ShardDataset(directory, 32, normal_fraction=0.5, seed=3)
    for e, i in [(0, 0), (5, 7), (7, 15)]:
        a, b = ds[(e, i)], again[(e, i)]
        assert all(torch.equal(a[k], b[k]) for k in a)
    n = ds[(0, 0)] if ds[(0, 0)]["mask"].sum() == 0 else ds[(1, 0)]
    assert torch.equal(n["image"], n["normal"])  # a normal item is its source, unaltered


def test_an_archive_reads_like_its_directory(dataset, tmp_path):
    from synth.store.archive import pack_dataset

    directory, _ = dataset
    tar = pack_dataset(directory, tmp_path / "set.tar")
    packed = ShardDataset(tar, 32, normal_fraction=0.0, cache_dir=tmp_path / "cache")
    plain = ShardDataset(directory, 32, normal_fraction=0.0)
    assert len(packed) == len(plain) and packed.directory.is_relative_to(tmp_path / "cache")
    assert all(torch.equal(packed[5][k], plain[5][k]) for k in plain[5])


def test_resize_to_the_model_size(dataset):
    directory, _ = dataset
    item = ShardDataset(directory, 64, normal_fraction=0.0)[(0, 1)]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert item["jnd"].shape == item["edge"].shape == (1, 64, 64)
    assert set(torch.unique(item["mask"]).tolist()) == {0, 1}


def test_flips_and_jitter_treat_image_and_targets_alike(dataset):
    directory, _ = dataset
    plain = ShardDataset(directory, 32, normal_fraction=0.0)
    ds = ShardDataset(directory, 32, normal_fraction=0.0, flips=True, jitter=0.2)
    assert ds.flips  # "folder" datasets are not position-bound
    flipped = 0
    for i in range(len(ds)):
        a, b = plain[(0, i)], ds[(0, i)]
        match = [dims for dims in ([], [2], [1], [1, 2]) if torch.equal(b["image"], a["image"].flip(dims))]
        assert match, f"item {i} is not a flip of the stored sample"
        assert all(torch.equal(b[k], a[k].flip(match[0])) for k in ("mask", "normal", "jnd", "edge"))
        flipped += match[0] != []
    assert 0 < flipped < len(ds)
    items = [ds[(0, i)] for i in range(len(ds))]
    b = to_float({k: torch.stack([it[k] for it in items]) for k in items[0]})
    gains = torch.stack([it["brightness"] for it in items])
    assert gains.min() >= 0.8 and gains.max() <= 1.2 and gains.std() > 0
    outside = b["mask"].expand_as(b["image"]) == 0  # image and normal got the same gain
    assert torch.equal(b["image"][outside], b["normal"][outside])


def test_flips_refused_for_position_bound_categories(tmp_path):
    make_dataset(tmp_path / "loco", n=4, shard_size=4, dataset="mvtec_loco")
    assert not ShardDataset(tmp_path / "loco", 32, flips=True).flips


def test_steps_on_a_fixed_batch_lower_the_loss(dataset):
    directory, _ = dataset
    torch.manual_seed(0)
    ds = ShardDataset(directory, 32, normal_fraction=0.0)
    batch = to_float({k: torch.stack([ds[i][k] for i in range(8)]) for k in ds[0]})
    model = LocalizationNet(ModelConfig("t", 32, (8, 16), (8, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        terms = total_loss(model(batch["image"]), batch)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append({k: float(v.detach()) for k, v in terms.items()})
    assert losses[-1]["total"] < 0.6 * losses[0]["total"]
    assert losses[-1]["img"] < 0.6 * losses[0]["img"] and losses[-1]["seg"] < losses[0]["seg"]


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    model = LocalizationNet(TINY).eval()
    x = torch.rand(2, 3, 32, 32)
    save_checkpoint(tmp_path / "m.pt", model, TINY, {"step": 7})
    loaded, config = load_checkpoint(tmp_path / "m.pt")
    assert config["preset"] == "tiny" and config["size"] == 32
    assert torch.equal(model(x)["seg"], loaded(x)["seg"])
    assert loaded.anomaly_map(x).shape == (2, 32, 32)
    assert not (tmp_path / "m.pt.tmp").exists()


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"garbage", "not a readable checkpoint"),
                                              ({"format": "other"}, "not a logical-localizer checkpoint")])
def test_bad_checkpoints_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_training_writes_run_files_and_resume_is_exact(dataset, tmp_path):
    directory, _ = dataset
    straight, _ = fit(tiny_config(directory, tmp_path / "a", steps=6))
    fit(tiny_config(directory, tmp_path / "b", steps=6, stop_at=4))  # interrupted after step 4 (of 6)
    state = read_checkpoint(tmp_path / "b" / "last.pt")
    assert state["step"] == 4 and state["optimizer"]["state"]
    resumed, path = fit(tiny_config(directory, tmp_path / "b", steps=6, resume=True))
    assert path == tmp_path / "b" / "model.pt" and read_checkpoint(path)["step"] == 6
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the interrupted run ends bit-identical
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"total", "img", "jnd", "edge", "seg"} <= set(rows[0]["loss"]) and rows[0]["samples_per_s"] > 0
    assert all(0 <= r["loader_wait"] <= 1 for r in rows) and "peak_memory_mb" not in rows[0]  # CUDA only
    png = cv2.imread(str(tmp_path / "b" / "loss.png"))
    assert png is not None and png.shape == (480, 800, 3) and (png < 200).any()


def test_resume_refuses_another_preset(dataset, tmp_path):
    directory, _ = dataset
    fit(tiny_config(directory, tmp_path / "r", steps=2))
    with pytest.raises(CheckpointError, match="last.pt"):
        fit(tiny_config(directory, tmp_path / "r", steps=4, size=64, resume=True))


def test_cli_trains_and_writes_a_weights_only_checkpoint(dataset, tmp_path):
    directory, _ = dataset
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--shards", str(directory), "--out", str(out), "--steps", "2",
                                      "--batch-size", "4", "--device", "cpu", "--preset", "small",
                                      "--workers", "1", "--size", "32"])
    assert result.exit_code == 0, result.output
    payload = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert payload["format"] == "logical-localizer" and payload["step"] == 2 and "optimizer" not in payload


@pytest.mark.parametrize("damage", ["missing", "checksum"])
def test_cli_refuses_a_damaged_dataset(dataset, tmp_path, damage):
    directory = tmp_path / "copy"
    shutil.copytree(dataset[0], directory)
    target = directory / shard_name(1)
    if damage == "missing":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["--shards", str(directory), "--out", str(tmp_path / "o"),
                                      "--steps", "1", "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and shard_name(1) in result.output
    assert ("missing" if damage == "missing" else "sha256") in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o" / "model.pt").exists()


def test_cli_without_shards_is_a_usage_error():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2 and "--shards" in result.output

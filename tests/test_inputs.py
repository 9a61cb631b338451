"""Inputs as cameras, annotation tools and notebooks write them (issue 15, items 1-4 and the sweep around
them): 12-bit data in 16-bit files, broken links, masks of the wrong size, soft/lossy masks, and the other
containers and metadata files every reader meets. Each expected value is the right reading, not the old one."""

import json
import struct
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from synth.build import build, format_report
from synth.cli import cli
from synth.datasets import image_shape, open_dataset
from synth.datasets.bitdepth import data_depth, significant_bits
from synth.datasets.images import load_mask, load_rgb, read_defect_mask
from synth.datasets.scan import scan_dataset
from synth.errors import DatasetError, ImageError
from train.evaluate import evaluate
from train.predict import predict

H, W = 80, 100          # images are 100 wide, 80 high
BG, DISC = 1800, 3600   # a 12-bit camera frame: values within 0..4095


def write(path: Path, arr: np.ndarray, *params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr, list(params))
    return path


def disc_frame(shift: int = 0, disc: int = DISC, bg: int = BG, dtype=np.uint16) -> np.ndarray:
    img = np.full((H, W), bg, dtype)
    cv2.circle(img, (50 + shift, 40), 20, disc, -1)
    return img


def with_sbit(path: Path, bits: bytes) -> Path:
    """Insert a PNG sBIT chunk after IHDR, as camera software writes it."""
    data = path.read_bytes()
    chunk = struct.pack(">I", len(bits)) + b"sBIT" + bits + struct.pack(">I", zlib.crc32(b"sBIT" + bits))
    path.write_bytes(data[:33] + chunk + data[33:])
    return path


def box(y0=20, y1=50, x0=30, x1=70, value=255, dtype=np.uint8) -> np.ndarray:
    m = np.zeros((H, W), dtype)
    m[y0:y1, x0:x1] = value
    return m


def mvtec_category(root: Path, train: int = 3) -> Path:
    cat = root / "part"
    for i in range(train):
        write(cat / "train" / "good" / f"{i:03d}.png", disc_frame(i, 200, 90, np.uint8))
    write(cat / "test" / "good" / "000.png", disc_frame(0, 200, 90, np.uint8))
    write(cat / "test" / "crack" / "000.png", disc_frame(3, 200, 90, np.uint8))
    write(cat / "ground_truth" / "crack" / "000_mask.png", box())
    return cat


# ---------------------------------------------------------------- 1. 12-bit data in 16-bit files
def test_twelve_bit_category_is_scaled_by_its_depth_in_build_and_scan(tmp_path):
    root = tmp_path / "cam"
    for i in range(4):
        write(root / "part" / f"{i:03d}.png", disc_frame(i))
    write(root / "part" / "004.png", disc_frame(0, disc=3000))     # a darker frame: same scale, not its own
    depth = data_depth(sorted((root / "part").glob("*.png")))
    assert depth.bits == 12 and "3600" in depth.how
    assert load_rgb(root / "part" / "004.png", depth.bits)[40, 50, 0] == 3000 * 255 // 4095      # 186

    report = build("folder", root, ["part"], out=tmp_path / "out", n=4, shard_size=4, size=H,
                   synthesizer="perlin", seed=1)["part"]
    assert report["bit_depth"].startswith("12-bit data in 16-bit files")
    assert "images: 12-bit data" in format_report({"part": report})
    with h5py.File(Path(report["out"]) / "sources.h5", "r") as f:
        image = f["image"][0]
    disc, bg = int(np.median(image[35:45, 45:55, 0])), int(np.median(image[:10, :10, 0]))
    assert abs(disc - 225) <= 2 and abs(bg - 112) <= 2, (disc, bg)     # old: 14 and 7

    res = CliRunner().invoke(cli, ["scan", "--dataset", "folder", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "12-bit data in 16-bit files" in res.output and "255/4095" in res.output


def test_png_sbit_decides_the_depth(tmp_path):
    a = with_sbit(write(tmp_path / "a.png", disc_frame(disc=900, bg=400)), b"\x0c")     # 12 significant bits
    b = with_sbit(write(tmp_path / "b.png", disc_frame(disc=3600)), b"\x0c")
    assert significant_bits(a) == (12, None)
    depth = data_depth([a, b])
    assert depth.bits == 12 and "sBIT" in depth.how      # not 10 from a's maximum alone
    assert load_rgb(a)[40, 50, 0] == 900 * 255 // 4095                 # sBIT honoured per file as well
    rgb = with_sbit(write(tmp_path / "c.png", np.dstack([disc_frame()] * 3)), b"\x0a\x0a\x0a")
    assert significant_bits(rgb) == (10, None)


def test_full_range_16_bit_and_8_bit_stay_as_they_are(tmp_path):
    full = write(tmp_path / "f.png", disc_frame(disc=60000, bg=20000))
    assert data_depth([full]).bits == 16
    assert load_rgb(full, 16)[40, 50, 0] == 60000 * 255 // 65535
    eight = write(tmp_path / "e.png", disc_frame(dtype=np.uint8, disc=200, bg=90))
    assert data_depth([eight]).bits is None and data_depth([eight]).describe() == "8-bit files"


def test_twelve_bit_rgb_and_rgba(tmp_path):
    bgr = np.dstack([disc_frame(), disc_frame(disc=2000), disc_frame(disc=1000)])
    colour = write(tmp_path / "rgb.png", bgr)
    alpha = np.full((H, W), 65535, np.uint16)
    alpha[:10, :10] = 0                                                    # transparent corner: white
    bgra = write(tmp_path / "rgba.png", np.dstack([bgr, alpha]))
    depth = data_depth([colour, bgra])
    assert depth.bits == 12                                               # alpha's 65535 is not data
    for path in (colour, bgra):
        out = load_rgb(path, depth.bits)
        assert tuple(out[40, 50]) == (1000 * 255 // 4095, 2000 * 255 // 4095, 3600 * 255 // 4095)
    assert (load_rgb(bgra, depth.bits)[:10, :10] == 255).all()


def test_predict_reads_twelve_bit_files_as_their_eight_bit_equivalent(tiny_checkpoint, tmp_path):
    deep = [write(tmp_path / "deep" / f"{i}.png", disc_frame(i)) for i in range(2)]
    flat = [write(tmp_path / "flat" / f"{i}.png", (disc_frame(i).astype(np.uint32) * 255 // 4095)
                  .astype(np.uint8)) for i in range(2)]
    rows_deep, _ = predict(tiny_checkpoint, deep, tmp_path / "o1", device="cpu")
    rows_flat, _ = predict(tiny_checkpoint, flat, tmp_path / "o2", device="cpu")
    assert [s for _, s, _ in rows_deep] == pytest.approx([s for _, s, _ in rows_flat], abs=1e-6)
    assert np.array_equal(load_rgb(tmp_path / "o1" / "0_overlay.png"), load_rgb(tmp_path / "o2" / "0_overlay.png"))


def test_eval_reads_twelve_bit_categories_as_their_eight_bit_equivalent(tiny_checkpoint, tmp_path):
    results = {}
    for name, frame in (("deep", disc_frame), ("flat", lambda i: (disc_frame(i).astype(np.uint32) * 255 // 4095)
                                                .astype(np.uint8))):
        cat = tmp_path / name / "part"
        for i in range(2):
            write(cat / "train" / "good" / f"{i}.png", frame(i))
        write(cat / "test" / "good" / "0.png", frame(2))
        write(cat / "test" / "crack" / "0.png", frame(3))
        write(cat / "ground_truth" / "crack" / "0_mask.png", box())
        results[name] = evaluate(tiny_checkpoint, "mvtec", tmp_path / name, "part", tmp_path / f"ev-{name}",
                                 device="cpu", n_heatmaps=1)
    scores = {k: [im["score"] for im in r["images"]] for k, r in results.items()}
    assert scores["deep"] == pytest.approx(scores["flat"], abs=1e-6)
    figure = results["deep"]["heatmaps"][0]
    assert np.array_equal(load_rgb(tmp_path / "ev-deep" / figure), load_rgb(tmp_path / "ev-flat" / figure))


# ---------------------------------------------------------------- 2. broken symbolic links
def dangle(link: Path, tmp_path: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path / "moved-away" / link.name)
    return link


def test_broken_links_are_problems_in_scan(tmp_path):
    root = tmp_path / "mvtec"
    cat = mvtec_category(root)
    train_link = dangle(cat / "train" / "good" / "009.png", tmp_path)
    mask = cat / "ground_truth" / "crack" / "000_mask.png"
    mask.unlink()
    dangle(mask, tmp_path)
    listing = open_dataset("mvtec", root).listing("part")
    assert train_link in listing.train                                     # not silently left out
    res = CliRunner().invoke(cli, ["scan", "--dataset", "mvtec", "--root", str(root)])
    assert res.exit_code == 1, res.output
    assert f"{train_link}: broken symbolic link" in res.output
    assert f"{mask}: broken symbolic link" in res.output and "no ground-truth mask" not in res.output
    with pytest.raises(DatasetError, match="000_mask.png: broken symbolic link"):
        open_dataset("mvtec", root).test_items("part")


def test_broken_train_link_stops_build_unless_skip_bad(tmp_path):
    root = tmp_path / "folder"
    for i in range(3):
        write(root / "part" / f"{i:03d}.png", disc_frame(i, 200, 90, np.uint8))
    link = dangle(root / "part" / "003.png", tmp_path)
    opts = {"n": 4, "shard_size": 4, "size": 64, "synthesizer": "perlin", "seed": 1}
    with pytest.raises(ImageError, match="003.png: broken symbolic link"):
        build("folder", root, ["part"], out=tmp_path / "a", **opts)
    report = build("folder", root, ["part"], out=tmp_path / "b", skip_bad=True, **opts)["part"]
    assert report["skipped"] == [str(link)] and report["counts"]["samples"] == 4


def test_broken_category_link_is_a_problem_in_scan_and_stops_build(tmp_path):
    """A category folder linked into the root whose target moved: not silently one category fewer."""
    root = tmp_path / "mvtec"
    mvtec_category(root)
    gone = dangle(root / "cable", tmp_path)
    res = CliRunner().invoke(cli, ["scan", "--dataset", "mvtec", "--root", str(root), "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["problems"] == [f"{gone}: broken symbolic link (its target {gone.readlink()} does not exist)"]
    assert list(report["categories"]) == ["part"]
    opts = {"n": 4, "shard_size": 4, "size": 64, "synthesizer": "perlin", "seed": 1}
    with pytest.raises(DatasetError, match=r"cable: broken symbolic link.*--skip-bad"):
        build("mvtec", root, None, out=tmp_path / "a", **opts)
    with pytest.raises(DatasetError, match=r"category 'cable': .*cable: broken symbolic link"):
        build("mvtec", root, ["cable"], out=tmp_path / "b", **opts)
    reports = build("mvtec", root, None, out=tmp_path / "c", skip_bad=True, **opts)
    assert list(reports) == ["part"] and reports["part"]["counts"]["samples"] == 4


def test_broken_mask_and_split_folders_say_so(tmp_path):
    root = loco_category(tmp_path / "loco", {})
    gt = dangle(root / "part" / "ground_truth" / "logical_anomalies" / "000", tmp_path)
    split = dangle(root / "part" / "test" / "structural_anomalies", tmp_path)
    problems = open_dataset("mvtec_loco", root).listing("part").problems
    assert f"{split}: broken symbolic link" in " ".join(problems)
    assert any(f"its ground-truth folder {gt}: broken symbolic link" in p for p in problems), problems
    assert not any("no ground truth (expected" in p for p in problems)


def test_broken_texture_and_config_links(tmp_path):
    root = tmp_path / "folder"
    for i in range(2):
        write(root / "part" / f"{i:03d}.png", disc_frame(i, 200, 90, np.uint8))
    textures = tmp_path / "dtd"
    write(textures / "a.jpg", disc_frame(0, 200, 90, np.uint8))
    link = dangle(textures / "sub" / "b.jpg", tmp_path)
    with pytest.raises(ImageError, match=f"--anomaly-source: {link}: broken symbolic link"):
        build("folder", root, ["part"], out=tmp_path / "o", n=4, shard_size=4, size=64, synthesizer="perlin",
              anomaly_source=textures)
    loco = loco_category(tmp_path / "loco", {"000.png": box()})
    config = loco / "part" / "defects_config.json"
    config.unlink()
    dangle(config, tmp_path)
    problems = open_dataset("mvtec_loco", loco).listing("part").problems
    assert any(p.startswith(f"{config}: broken symbolic link") for p in problems), problems


@pytest.mark.parametrize("dataset", ["mvtec", "madsim", "folder", "mvtec_loco", "visa"])
def test_every_reader_sees_broken_links(dataset, tmp_path):
    root = tmp_path / dataset
    if dataset == "visa":
        rel = "cap/Data/Images/Normal"
        for i in range(2):
            write(root / rel / f"{i}.JPG", disc_frame(i, 200, 90, np.uint8))
        dangle(root / rel / "2.JPG", tmp_path)
        rows = ["object,split,label,image,mask"] + [f"cap,train,normal,{rel}/{i}.JPG," for i in range(3)]
        (root / "split_csv").mkdir(parents=True)
        (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
        problems = open_dataset("visa", root).listing("cap").problems
        assert any("2.JPG: broken symbolic link" in p for p in problems), problems
        return
    good = root / "part" / ("train/good" if dataset != "folder" else "")
    for i in range(2):
        write(good / f"{i}.png", disc_frame(i, 200, 90, np.uint8))
    if dataset == "mvtec_loco":
        (root / "part" / "validation").mkdir()
    link = dangle(good / "2.png", tmp_path)
    assert link in open_dataset(dataset, root).train_images("part")
    report = scan_dataset(open_dataset(dataset, root))
    assert any(p.startswith(f"{link}: broken symbolic link") for p in report["categories"]["part"]["problems"])


# ---------------------------------------------------------------- 3. masks of the wrong size
def test_transposed_mask_is_refused_by_eval_and_every_mask_consumer(tiny_checkpoint, tmp_path):
    root = tmp_path / "mvtec"
    cat = mvtec_category(root)
    mask = write(cat / "ground_truth" / "crack" / "000_mask.png", box().T.copy())      # 80 wide, 100 high
    message = f"{mask}: mask is 80x100 but its image .*000.png is 100x80"
    item = [it for it in open_dataset("mvtec", root).test_items("part") if it.label][0]
    with pytest.raises(DatasetError, match=message):
        item.mask()
    with pytest.raises(DatasetError, match=message):
        item.check_masks()
    with pytest.raises(DatasetError, match=message):
        evaluate(tiny_checkpoint, "mvtec", root, "part", tmp_path / "ev", device="cpu", n_heatmaps=0)
    from train.cli import cli as train_cli

    res = CliRunner().invoke(train_cli, ["eval", "--checkpoint", str(tiny_checkpoint), "--dataset", "mvtec",
                                         "--root", str(root), "--out", str(tmp_path / "ev"), "--device", "cpu"])
    assert res.exit_code == 1 and "Error:" in res.output and "80x100" in res.output and "100x80" in res.output
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_loco_region_of_the_wrong_size_is_refused(tmp_path):
    root = loco_category(tmp_path / "loco", {"000.png": box(value=255)[:, :90]})
    item = [it for it in open_dataset("mvtec_loco", root).test_items("part") if it.label][0]
    with pytest.raises(DatasetError, match="mask is 90x80 but its image .* is 100x80"):
        item.region_masks()
    with pytest.raises(DatasetError, match="90x80"):
        item.check_masks()


# ---------------------------------------------------------------- 4. soft and lossy masks
def test_jpeg_mask_counts_the_defect_not_its_ringing(tmp_path):
    truth = box(25, 55, 30, 62)
    jpeg = write(tmp_path / "m.jpg", truth, cv2.IMWRITE_JPEG_QUALITY, 75)
    raw = load_mask(jpeg)
    assert np.count_nonzero(raw) > 1.1 * np.count_nonzero(truth)           # every nonzero: too many
    got = read_defect_mask(jpeg)
    assert abs(int(got.sum()) - int((truth > 0).sum())) <= 0.02 * (truth > 0).sum()
    assert (got == (truth > 0)).mean() > 0.995


def test_soft_edged_masks_are_read_at_half_their_range(tmp_path):
    truth = box() > 0
    soft8 = cv2.GaussianBlur(box(), (9, 9), 3)
    assert np.array_equal(read_defect_mask(write(tmp_path / "s8.png", soft8)), soft8 >= 128)
    soft16 = soft8.astype(np.uint16) * 257
    assert np.array_equal(read_defect_mask(write(tmp_path / "s16.png", soft16)), soft16 >= 32768)
    assert abs(int((soft8 >= 128).sum()) - int(truth.sum())) < 0.05 * truth.sum()


@pytest.mark.parametrize("values", [(0, 255, np.uint8), (0, 1, np.uint8), (0, 65535, np.uint16),
                                    (0, 255, np.uint16), (0, 1, np.uint16)])
def test_two_level_masks_keep_their_exact_meaning(values, tmp_path):
    lo, hi, dtype = values
    mask = box(value=hi, dtype=dtype)
    assert np.array_equal(read_defect_mask(write(tmp_path / "m.png", mask)), box() > 0)


def test_masks_in_colour_palette_alpha_and_one_bit_files(tmp_path):
    truth = box() > 0
    red = np.zeros((H, W, 3), np.uint8)
    red[truth] = (0, 0, 255)
    assert np.array_equal(read_defect_mask(write(tmp_path / "red.png", red)), truth)
    rgba = np.full((H, W, 4), 255, np.uint8)                                # white, transparent outside
    rgba[~truth, 3] = 0
    assert np.array_equal(read_defect_mask(write(tmp_path / "rgba.png", rgba)), truth)
    pal = Image.fromarray(truth.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(read_defect_mask(tmp_path / "pal.png"), truth)
    Image.fromarray(truth).convert("1").save(tmp_path / "one.png")
    assert np.array_equal(read_defect_mask(tmp_path / "one.png"), truth)
    Image.fromarray(np.dstack([truth * 255, truth * 255]).astype(np.uint8), "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_defect_mask(tmp_path / "la.png"), truth)


def test_label_masks_count_every_label(tmp_path):
    labels = box(value=1)
    labels[60:70, 10:20] = 2                                               # two classes, all below 128
    assert np.array_equal(read_defect_mask(write(tmp_path / "l.png", labels)), labels > 0)


def test_scan_notes_how_soft_masks_are_read(tmp_path):
    root = tmp_path / "mvtec"
    cat = mvtec_category(root)
    write(cat / "ground_truth" / "crack" / "000_mask.png", cv2.GaussianBlur(box(), (9, 9), 3))
    report = scan_dataset(open_dataset("mvtec", root))["categories"]["part"]
    assert report["problems"] == []
    assert any("000_mask.png: holds" in n and "value >= 128" in n for n in report["notes"]), report["notes"]


def loco_category(root: Path, regions: dict[str, np.ndarray], config_text: str | None = None) -> Path:
    cat = root / "part"
    for i in range(2):
        write(cat / "train" / "good" / f"{i:03d}.png", disc_frame(i, 200, 90, np.uint8))
    (cat / "validation" / "good").mkdir(parents=True)
    write(cat / "test" / "logical_anomalies" / "000.png", disc_frame(3, 200, 90, np.uint8))
    for name, mask in regions.items():
        write(cat / "ground_truth" / "logical_anomalies" / "000" / name, mask)
    config = [{"defect_name": "extra", "pixel_value": 255, "saturation_threshold": 1.0,
               "relative_saturation": True},
              {"defect_name": "missing", "pixel_value": 254, "saturation_threshold": 1.0,
               "relative_saturation": True}]
    (cat / "defects_config.json").write_text(config_text or json.dumps(config))
    return root


def test_loco_pixel_values_read_exactly_and_through_soft_edges(tmp_path):
    soft = cv2.GaussianBlur(box(10, 30, 10, 40, value=254), (7, 7), 2)      # anti-aliased, value 254
    root = loco_category(tmp_path / "loco", {"000.png": box(50, 70, 60, 90, value=255), "001.png": soft})
    item = [it for it in open_dataset("mvtec_loco", root).test_items("part") if it.label][0]
    assert [(r.defect_name, r.pixel_value) for r in item.regions] == [("extra", 255), ("missing", 254)]
    exact, near = item.region_masks()
    assert np.array_equal(exact, box(50, 70, 60, 90) > 0)
    assert np.array_equal(near, soft >= 127)
    assert abs(int(near.sum()) - 600) < 30
    notes = scan_dataset(open_dataset("mvtec_loco", root))["categories"]["part"]["notes"]
    assert len(notes) == 1 and "001.png" in notes[0] and "pixel value 254" in notes[0]


def test_loco_file_with_two_defects_is_still_a_problem(tmp_path):
    two = box(value=255)
    two[60:70, 10:20] = 254
    root = loco_category(tmp_path / "loco", {"000.png": two})
    problems = open_dataset("mvtec_loco", root).listing("part").problems
    assert any("must hold one nonzero pixel value, found 2" in p for p in problems), problems


# ---------------------------------------------------------------- the sweep: containers and metadata files
def test_exif_orientation_turns_phone_jpegs_upright(tmp_path):
    upright = np.zeros((H, W, 3), np.uint8)
    upright[:10, :] = (255, 0, 0)                                          # red band on top, as seen
    stored = np.rot90(upright, 1)                                          # the sensor's order: 80 wide
    ex = Image.Exif()
    ex[0x0112] = 6                                                         # "rotate 90 CW to display"
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.jpg", exif=ex, quality=95)
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "scan.tif", exif=ex)
    for name in ("phone.jpg", "scan.tif"):
        out = load_rgb(tmp_path / name)
        assert out.shape == (H, W, 3) and image_shape(tmp_path / name) == (H, W), name
        assert out[:8, :, 0].mean() > 200 and out[20:, :, 0].mean() < 30, name


def test_cmyk_jpeg_reads_as_its_colours(tmp_path):
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red
    out = load_rgb(tmp_path / "cmyk.jpg")
    assert out[40, 50, 0] > 240 and out[40, 50, 1:].max() < 15


def test_float_and_wide_integer_files_stop_instead_of_clipping(tmp_path):
    tif = tmp_path / "f.tif"
    assert cv2.imwrite(str(tif), np.full((H, W), 3600.0, np.float32))
    with pytest.raises(ImageError, match="f.tif: floating-point image with values 3600"):
        load_rgb(tif)
    ok = tmp_path / "u.tif"
    assert cv2.imwrite(str(ok), np.full((H, W), 0.5, np.float32))
    assert load_rgb(ok)[0, 0, 0] == 128


def test_visa_csv_with_bom_and_crlf(tmp_path):
    root = tmp_path / "visa"
    rel = "cap/Data/Images/Normal"
    for i in range(2):
        write(root / rel / f"{i}.JPG", disc_frame(i, 200, 90, np.uint8))
    rows = ["object,split,label,image,mask"] + [f"cap,train,normal,{rel}/{i}.JPG," for i in range(2)]
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    reader = open_dataset("visa", root)
    assert reader.categories() == ["cap"]
    assert [p.name for p in reader.train_images("cap")] == ["0.JPG", "1.JPG"]


def test_loco_config_with_bom(tmp_path):
    config = [{"defect_name": "extra", "pixel_value": 255, "saturation_threshold": 1.0,
               "relative_saturation": True}]
    root = loco_category(tmp_path / "loco", {"000.png": box()}, "\ufeff" + json.dumps(config))
    item = [it for it in open_dataset("mvtec_loco", root).test_items("part") if it.label][0]
    assert item.regions[0].defect_name == "extra"

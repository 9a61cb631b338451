"""fit-generator on small categories: the held-out share scales with the category, and below the stated
minimum it fits on every image, warns, and labels its quality as measured on training images."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from synth.datasets.images import save_image
from synth.render.fitting import MIN_FIT_IMAGES, fit_for_category, held_out_count, read_train_state
from synth.render.generator import read_checkpoint


def folder_category(root: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    for i in range(n):
        image = np.full((48, 48, 3), 90, np.uint8)
        centre = tuple(int(v) for v in rng.integers(12, 36, 2))
        cv2.circle(image, centre, 8, (200, 180, 40), -1)
        save_image(root / "parts" / f"{i:02d}.png", image)
    return root


def fit(root: Path, out: Path) -> dict:
    torch.set_num_threads(1)
    fit_for_category("folder", root, "parts", size=32, preset="tiny", epochs=1, out=out, batch_size=4,
                     device="cpu", progress=False)
    return read_checkpoint(out)


def test_held_out_share_scales_with_the_category():
    assert MIN_FIT_IMAGES == 10
    assert [held_out_count(n) for n in (5, 9, 10, 20, 28, 60, 1000)] == [0, 0, 1, 2, 3, 6, 32]


def test_five_images_fit_on_all_with_a_warning_and_a_labelled_quality(tmp_path, capsys):
    ckpt = fit(folder_category(tmp_path / "raw", 5), tmp_path / "g.pt")
    err = capsys.readouterr().err
    assert "warning: parts has 5 normal train images, fewer than 10: the generator will be weak" in err
    assert "SSIM(G(E), I) on 5 training images (none held out: optimistic)" in err
    q = ckpt["quality"]
    assert q["on"] == "train" and q["n"] == 5 and "training images" in q["note"]
    assert read_train_state(tmp_path / "g.pt")["step"] == 2            # 5 images fitted, batch 4: 2 steps


@pytest.mark.parametrize(("n", "held", "steps"), [(20, 2, 5), (12, 1, 3)])
def test_larger_categories_keep_most_images_for_fitting(tmp_path, capsys, n, held, steps):
    ckpt = fit(folder_category(tmp_path / "raw", n), tmp_path / "g.pt")
    assert "warning" not in capsys.readouterr().err
    assert ckpt["quality"]["on"] == "held-out" and ckpt["quality"]["n"] == held
    assert read_train_state(tmp_path / "g.pt")["step"] == steps        # (n - held) / batch 4, rounded up

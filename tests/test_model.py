"""The localization network: DRAEM shapes, heads, presets, the anomaly map, and gradient flow."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from train.losses import focal_loss
from train.model import LocalizationNet, ModelConfig, count_parameters, make_config

TINY = ModelConfig("tiny", 32, rec_widths=(4, 8, 8), seg_widths=(4, 8, 8))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def forward_flops(config: ModelConfig) -> int:
    """FLOPs of one forward pass at the config's size, counted on the meta device (no compute)."""
    with torch.device("meta"):
        model = LocalizationNet(config)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, config.size, config.size))
    return counter.get_total_flops()


def test_base_preset_has_the_draem_shape():
    with torch.device("meta"):
        model = LocalizationNet(make_config("base"))
    enc = [b[0].out_channels for b in model.reconstruction.encoder.blocks]
    seg = [b[0].out_channels for b in model.segmentation.encoder.blocks]
    assert enc == [128, 256, 512, 1024, 1024] and seg == [64, 128, 256, 512, 512, 512]
    assert model.segmentation.encoder.blocks[0][0].in_channels == 8  # input, I_rec, J_rec, E_rec
    assert all(isinstance(b[1], torch.nn.BatchNorm2d) for b in model.reconstruction.encoder.blocks)
    # DRAEM's reconstructive sub-network (3 outputs) is 69.05 M parameters, the discriminative 28.37 M:
    # ours adds two 1-channel heads (2 x 1153) and two input channels to the U-Net (2 x 9 x 64)
    assert 68.9e6 < count_parameters(model.reconstruction) < 69.2e6
    assert 28.2e6 < count_parameters(model.segmentation) < 28.5e6
    assert make_config("base").size == 256 and make_config("small").size == 128


def test_small_preset_is_two_orders_of_magnitude_cheaper():
    base, small = forward_flops(make_config("base")), forward_flops(make_config("small"))
    assert base / small > 100  # each at its own size (256 vs 128 px)
    assert forward_flops(make_config("small", 256)) * 10 < base  # and > 10x at the same size


@pytest.mark.parametrize("size", [32, 64])
def test_forward_returns_every_head_at_input_size(size):
    model = LocalizationNet(ModelConfig("tiny", size, TINY.rec_widths, TINY.seg_widths))
    out = model(torch.rand(2, 3, size, size))
    assert out["image"].shape == (2, 3, size, size)
    assert out["jnd"].shape == out["edge"].shape == out["edge_logits"].shape == (2, 1, size, size)
    assert out["seg"].shape == (2, 2, size, size)
    assert torch.allclose(out["edge"], torch.sigmoid(out["edge_logits"]))


def test_anomaly_map_is_the_softmax_anomaly_channel():
    torch.manual_seed(0)
    model = LocalizationNet(TINY).eval()
    x = torch.rand(3, 3, 32, 32)
    amap = model.anomaly_map(x)
    assert amap.shape == (3, 32, 32) and not amap.requires_grad
    assert torch.allclose(amap, torch.softmax(model(x)["seg"], dim=1)[:, 1])
    assert 0 <= amap.min() and amap.max() <= 1


def test_segmentation_loss_trains_the_reconstruction_too():
    """The U-Net reads I_rec, J_rec and E_rec un-detached, so L_seg reaches the reconstruction weights."""
    model = LocalizationNet(TINY)
    loss = focal_loss(model(torch.rand(2, 3, 32, 32))["seg"], torch.zeros(2, 32, 32))
    loss.backward()
    assert model.reconstruction.encoder.blocks[0][0].weight.grad.abs().sum() > 0


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(1)
    model = LocalizationNet(TINY).eval()
    x = torch.rand(2, 3, 32, 32)
    ref = model(x)["seg"]
    cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))["seg"]
    assert torch.allclose(ref, cl, atol=1e-5)


def test_sizes_the_network_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        make_config("base", 100)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    assert make_config("small", 96).size == 96

"""Pins of the exact 2015 network (Ronneberger et al., Fig. 1 and Sec. 2-3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from variants import count_parameters, create_model, forward_flops, get_variant


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("unet-original")


def test_parameter_count(model: nn.Module) -> None:
    assert count_parameters(model) == 31_030_658


def test_23_convolution_layers_of_the_paper(model: nn.Module) -> None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    upconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) + len(upconvs) == 23
    assert sorted({m.kernel_size for m in convs}) == [(1, 1), (3, 3)]
    assert all(m.padding == (0, 0) for m in convs), "the paper's convolutions are unpadded"
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in upconvs] == [
        (1024, 512, (2, 2), (2, 2)),
        (512, 256, (2, 2), (2, 2)),
        (256, 128, (2, 2), (2, 2)),
        (128, 64, (2, 2), (2, 2)),
    ], "2x2 up-convolutions halving the channels"
    widths = [m.out_channels for m in convs if m.kernel_size == (3, 3)]
    assert widths[:10] == [64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024]
    head = convs[-1]
    assert (head.in_channels, head.out_channels, head.kernel_size) == (64, 2, (1, 1))


def test_relu_maxpool_and_dropout_at_end_of_contracting_path(model: nn.Module) -> None:
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 18
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())


def test_he_normal_initialisation(model: nn.Module) -> None:
    """Weights ~ N(0, sqrt(2/N)), N = inputs of one neuron: 9 * 512 for the 512 -> 512 conv."""
    conv = model.encoder[3][1][0]
    assert (conv.in_channels, conv.out_channels) == (512, 512)
    expected = math.sqrt(2 / (9 * 512))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.01)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=expected * 0.01)
    assert torch.count_nonzero(conv.bias) == 0


def test_572_input_gives_388_output(model: nn.Module) -> None:
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 1, 572, 572))
    assert y.shape == (1, 2, 388, 388)


def test_forward_flops_at_572() -> None:
    flops = forward_flops(get_variant("unet-original").config, 572)
    assert flops / 1e9 == pytest.approx(300.9, abs=1.0)

"""Attention gates (Oktay et al. 2018) as an axis of the U-Net family."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.cli import parse_assignments
from bench.config import split_settings
from variants import ConfigError, count_parameters, get_variant, resolve_config
from variants.blocks import AttentionGate
from variants.unet import UNetConfig


def upsample2_by_hand(t: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 with half-pixel centres: output 2k takes 1/4 of input k-1 and 3/4 of k, output
    2k+1 takes 3/4 of k and 1/4 of k+1 (edges repeat), along each of the last two axes."""
    for dim in (-2, -1):
        n = t.shape[dim]
        prev = t.index_select(dim, torch.tensor([max(k - 1, 0) for k in range(n)]))
        nxt = t.index_select(dim, torch.tensor([min(k + 1, n - 1) for k in range(n)]))
        even, odd = 0.25 * prev + 0.75 * t, 0.75 * t + 0.25 * nxt
        t = torch.stack([even, odd], dim=dim).flatten(dim - 1, dim)  # interleave: 2k, 2k+1
    return t


def test_by_hand_upsampling_matches_known_values() -> None:
    t = torch.tensor([[0.0, 4.0]])
    assert upsample2_by_hand(t[None]).tolist() == [[[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]]


def gate_by_hand(gate: AttentionGate, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Eq. 1-2 of the paper written out: subsample x to g's grid, 1x1 maps as matrix products."""
    wx = gate.w_x.weight[:, :, 0, 0]
    wg, bg = gate.w_g.weight[:, :, 0, 0], gate.w_g.bias
    psi, bpsi = gate.psi.weight[0, :, 0, 0], gate.psi.bias
    x = skip[..., ::2, ::2]
    f = torch.relu(torch.einsum("oc,nchw->nohw", wx, x) + torch.einsum("oc,nchw->nohw", wg, coarse) + bg[:, None, None])
    alpha = torch.sigmoid(torch.einsum("c,nchw->nhw", psi, f) + bpsi)[:, None]
    return upsample2_by_hand(alpha) * skip


def test_gate_matches_the_papers_equations_and_coefficients_lie_in_0_1() -> None:
    torch.manual_seed(0)
    gate = AttentionGate(6, 10)
    skip, coarse = torch.randn(2, 6, 8, 10), torch.randn(2, 10, 4, 5)
    with torch.no_grad():
        alpha = gate.coefficients(skip, coarse)
        out = gate(skip, coarse)
        expected = gate_by_hand(gate, skip, coarse)
    assert alpha.shape == (2, 1, 8, 10)
    assert ((alpha > 0) & (alpha < 1)).all()
    assert alpha.std() > 0, "the coefficients must depend on the pixel"
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(("bias", "expected_scale"), [(50.0, 1.0), (-200.0, 0.0)])
def test_saturated_psi_passes_or_blocks_the_skip(bias: float, expected_scale: float) -> None:
    torch.manual_seed(1)
    gate = AttentionGate(3, 5)
    with torch.no_grad():
        gate.psi.weight.zero_()
        gate.psi.bias.fill_(bias)
        skip, coarse = torch.randn(1, 3, 6, 6), torch.randn(1, 5, 3, 3)
        assert torch.equal(gate(skip, coarse), skip * expected_scale)


def test_open_gates_give_the_ungated_network() -> None:
    """With every gate saturated open, the gated U-Net is the paper's U-Net with the same weights:
    the gate acts on the cropped skip, exactly where crop-and-copy puts it."""
    config = UNetConfig(base_width=4, depth=2)
    torch.manual_seed(2)
    gated = dataclasses.replace(config, attention="additive").build().eval()
    plain = config.build().eval()
    missing, unexpected = plain.load_state_dict(gated.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("gates.") for k in unexpected)
    x = torch.randn(1, 1, config.valid_input_size(60), config.valid_input_size(60))
    with torch.no_grad():
        assert not torch.allclose(gated(x), plain(x)), "random gates must change the output"
        for gate in gated.gates:
            gate.psi.weight.zero_()
            gate.psi.bias.fill_(50.0)
        assert torch.equal(gated(x), plain(x))


SHAPE_CASES = [
    (padding, depth, upsample, norm)
    for padding in ("valid", "same")
    for depth, upsample, norm in ((1, "transpose", "none"), (2, "bilinear", "batch"), (3, "transpose", "group"))
] + [("valid", 4, "bilinear", "instance"), ("same", 4, "transpose", "none")]


@pytest.mark.parametrize(("padding", "depth", "upsample", "norm"), SHAPE_CASES)
def test_gates_keep_every_shape(padding: str, depth: int, upsample: str, norm: str) -> None:
    """Each gate returns its (cropped) skip's shape, the gating signal is half its side, and the
    network's output is the ungated network's size."""
    config = resolve_config(
        "unet-attention", padding=padding, depth=depth, upsample=upsample, norm=norm, base_width=4, group_norm_groups=2
    )
    torch.manual_seed(3)
    model = config.build().eval()
    seen: list[tuple[torch.Size, torch.Size, torch.Size]] = []
    for gate in model.gates:
        gate.register_forward_hook(lambda _m, args, out: seen.append((args[0].shape, args[1].shape, out.shape)))
    side = config.valid_input_size(44)
    with torch.no_grad():
        y = model(torch.randn(1, 1, side, side))
    assert y.shape[-1] == config.output_size(side) == dataclasses.replace(config, attention="none").output_size(side)
    assert len(seen) == depth
    for skip, coarse, out in seen:
        assert out == skip
        assert (skip[-2], skip[-1]) == (2 * coarse[-2], 2 * coarse[-1])


def gate_params_by_hand(f_l: int, f_g: int) -> int:
    """W_x (F_l x F_int, no bias) + W_g (F_g x F_int) + b_g + psi (F_int x 1) + b_psi, F_int = F_l."""
    f_int = f_l
    return f_l * f_int + f_g * f_int + f_int + f_int + 1


def test_parameters_added_by_the_gates_at_the_papers_widths() -> None:
    widths = (64, 128, 256, 512, 1024)
    expected = sum(gate_params_by_hand(widths[i], widths[i + 1]) for i in range(4))
    assert expected == 1_046_404
    with torch.device("meta"):
        original = count_parameters(get_variant("unet-original").config.build())
        gated = get_variant("unet-attention").config.build()
    assert count_parameters(gated) - original == expected
    assert count_parameters(gated.gates) == expected
    assert count_parameters(gated) == 32_077_062


def test_unet_original_is_unchanged_without_attention() -> None:
    with torch.device("meta"):
        original = get_variant("unet-original").config.build()
        explicit = UNetConfig(attention="none").build()
        gated = get_variant("unet-attention").config.build()
    assert original.gates is None
    assert list(original.state_dict()) == list(explicit.state_dict())
    assert [k for k in gated.state_dict() if not k.startswith("gates.")] == list(original.state_dict())


def test_attention_is_set_through_the_override_path() -> None:
    model_overrides, _ = split_settings(parse_assignments(["model.attention=additive", "model.padding=same"]))
    assert resolve_config("unet-original", **model_overrides) == get_variant("unet-attention-same").config
    assert get_variant("unet-attention").config == UNetConfig(attention="additive")
    with pytest.raises(ConfigError, match="one of 'none', 'additive'.*Did you mean 'additive'"):
        resolve_config("unet-original", attention="additiv")

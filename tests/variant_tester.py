"""One tester for every registered variant (as segmentation-models-pytorch's ``tests/models/base.py``).

A new variant is covered by registering it: the parametrised tests enumerate the registry.
"""

from __future__ import annotations

import io

import torch

from variants import resolve_config

# Small enough for a 2-core CPU; every family picks its accepted size closest to this.
TEST_SIDE = 96


def tiny_model(name: str, seed: int = 0) -> tuple[torch.nn.Module, int, int]:
    """The variant at test width, seeded, with its accepted input side and the output side."""
    config = resolve_config(name).tiny()
    torch.manual_seed(seed)
    model = config.build()
    side = config.valid_input_size(TEST_SIDE)
    return model, side, config.output_size(side)


def check_forward_backward(name: str) -> None:
    config = resolve_config(name)
    model, side, out_side = tiny_model(name)
    model.train()
    x = torch.randn(2, config.in_channels, side, side)
    y = model(x)
    assert y.shape == (2, config.num_classes, out_side, out_side), (name, y.shape)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
    assert any(g.abs().sum() > 0 for g in grads), f"{name}: no gradient reached any parameter"


def check_seed_determinism(name: str) -> None:
    config = resolve_config(name)
    a, side, _ = tiny_model(name, seed=1)
    b, _, _ = tiny_model(name, seed=1)
    c, _, _ = tiny_model(name, seed=2)
    x = torch.randn(1, config.in_channels, side, side)
    with torch.no_grad():
        ya, yb, yc = a.eval()(x), b.eval()(x), c.eval()(x)
    assert torch.equal(ya, yb), f"{name}: same seed, different output"
    assert not torch.equal(ya, yc), f"{name}: the seed does not change the weights"


def check_state_dict_round_trip(name: str) -> None:
    config = resolve_config(name)
    src, side, _ = tiny_model(name, seed=3)
    dst, _, _ = tiny_model(name, seed=4)
    buffer = io.BytesIO()
    torch.save(src.state_dict(), buffer)
    buffer.seek(0)
    dst.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(1, config.in_channels, side, side)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x)), f"{name}: state_dict round trip changed outputs"


def check_variant(name: str) -> None:
    """Every contract a registered variant must meet."""
    check_forward_backward(name)
    check_seed_determinism(name)
    check_state_dict_round_trip(name)

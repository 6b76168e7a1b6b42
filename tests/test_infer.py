"""Overlap-tile prediction: valid nets equal direct prediction of each tile; same-padded nets
equal whole-image prediction away from the borders."""

from __future__ import annotations

import numpy as np
import torch

from bench.infer import mirror_pad, plan_tiles, predict_tiled
from variants import resolve_config


def test_valid_conv_tiles_equal_direct_prediction_of_each_tile_centre() -> None:
    config = resolve_config("unet-original", base_width=4)
    torch.manual_seed(0)
    model = config.build().eval()
    image = np.random.default_rng(0).random((250, 250), dtype=np.float32)
    plan = plan_tiles(config, 284)  # 284 -> 100: three tiles per side, the last one overhanging
    assert (plan.input_tile, plan.output_tile) == (284, 100)
    tiled = predict_tiled(model, image, config, tile=284, batch_size=5)
    assert tiled.shape == (2, 250, 250)
    border = (plan.input_tile - plan.output_tile) // 2
    padded = mirror_pad(image, border, 300 - 250 + border, 300 - 250 + border)
    for y, x in [(0, 0), (100, 200), (200, 200), (200, 0)]:
        window = torch.from_numpy(padded[None, None, y : y + 284, x : x + 284].copy())
        with torch.no_grad():
            direct = model(window).softmax(dim=1)[0].numpy()
        keep_y, keep_x = min(100, 250 - y), min(100, 250 - x)
        assert np.allclose(tiled[:, y : y + keep_y, x : x + keep_x], direct[:, :keep_y, :keep_x], atol=1e-6)


def test_mirrored_border_reflects_the_image() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    padded = mirror_pad(image, 2, 2, 2)
    assert np.array_equal(padded[2:6, 2:6], image)
    assert np.array_equal(padded[2:6, 1], image[:, 0]) and np.array_equal(padded[1, 2:6], image[0])


def test_same_padded_tiles_equal_whole_image_prediction_away_from_borders() -> None:
    config = resolve_config("unet-same", base_width=4, depth=2)
    torch.manual_seed(0)
    model = config.build().eval()
    image = np.random.default_rng(1).random((256, 256), dtype=np.float32)
    tiled = predict_tiled(model, image, config, tile=128, margin=32, batch_size=4)
    with torch.no_grad():
        whole = model(torch.from_numpy(image)[None, None]).softmax(dim=1)[0].numpy()
    inner = slice(48, 208)  # beyond the receptive field of zero padding at the image border
    assert np.abs(tiled[:, inner, inner] - whole[:, inner, inner]).max() < 1e-5

"""Overlap-tile prediction of images of any size, with mirrored borders (paper, Fig. 2).

A valid-convolution network sees more than it predicts: to predict an output tile it needs a
larger input tile around it. The image is mirrored at its borders to provide that context, cut
into input tiles whose output tiles cover the image exactly, and the tiles run in batches.
Same-padded networks are tiled with an overlap margin whose predictions are thrown away, because
zero padding makes a tile's border pixels unlike the whole-image prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from variants.registry import ModelConfig
from variants.sizes import InvalidInputSize


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut: input tile side, the output side it yields, and the kept centre."""

    input_tile: int
    output_tile: int
    keep: int  # side of the kept centre of each output tile
    offset: int  # pixels between an output tile's corner and its kept centre

    @property
    def context(self) -> int:
        """Mirrored pixels needed before the first kept pixel."""
        return (self.input_tile - self.output_tile) // 2 + self.offset


def plan_tiles(config: ModelConfig, tile: int, margin: int | None = None) -> TilePlan:
    """A plan around an input tile side near ``tile``.

    Valid-conv nets keep their whole output tile. Same-padded nets discard ``margin`` pixels on
    every side (default: a quarter of the tile, rounded to the network's size step so that the
    pooling grid of every tile lines up with the whole image's).
    """
    input_tile = config.valid_input_size(tile)
    output_tile = config.output_size(input_tile)
    if output_tile != input_tile:
        return TilePlan(input_tile, output_tile, output_tile, 0)
    step = config.valid_input_size(1)  # the smallest accepted size is the alignment step
    if margin is None:
        margin = (input_tile // 4) // step * step
    if margin % step or not 0 <= 2 * margin < input_tile:
        raise ValueError(f"margin {margin} must be a multiple of {step} and leave a centre in a {input_tile} tile")
    return TilePlan(input_tile, output_tile, input_tile - 2 * margin, margin)


def plan_for_image(config: ModelConfig, tile: int, height: int, width: int, margin: int | None = None) -> TilePlan:
    """``plan_tiles(config, tile, margin)``, or when one kept window of it covers the whole image
    the smallest plan that still does (with the default margin): a 256x256 image is not run
    through a 572x572 tile of mirrored context. Images of any size, smaller than a tile too,
    are covered; only the work changes."""
    plan = plan_tiles(config, tile, margin)
    side = max(height, width)
    if margin is not None or plan.keep < side:
        return plan
    near = plan.input_tile
    while near > 8:
        near -= 4
        try:
            smaller = plan_tiles(config, near)
        except (ValueError, InvalidInputSize):  # no accepted size or margin left below
            break
        if smaller.keep < side:
            break
        plan = min(plan, smaller, key=lambda p: p.input_tile)
    return plan


def mirror_pad(image: np.ndarray, before: int, after_y: int, after_x: int) -> np.ndarray:
    """Mirror an (..., H, W) array by ``before`` px top/left and ``after_*`` px bottom/right."""
    pad = [(0, 0)] * (image.ndim - 2) + [(before, after_y), (before, after_x)]
    return np.pad(image, pad, mode="symmetric")


def tile_origins(height: int, width: int, keep: int) -> list[tuple[int, int]]:
    """Top-left corners, in image coordinates, of kept windows that cover the image."""
    return [(y, x) for y in range(0, height, keep) for x in range(0, width, keep)]


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: np.ndarray,
    config: ModelConfig,
    tile: int = 572,
    batch_size: int = 4,
    margin: int | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Class probabilities (num_classes, H, W) of an (H, W) or (C, H, W) image, tile by tile."""
    image = image[None] if image.ndim == 2 else image
    _, height, width = image.shape
    plan = plan_for_image(config, tile, height, width, margin)
    # enough mirrored context on every side, and enough at the end to fill the last tile
    rows = -(-height // plan.keep)
    cols = -(-width // plan.keep)
    after_y = rows * plan.keep - height + plan.input_tile - plan.keep - plan.context
    after_x = cols * plan.keep - width + plan.input_tile - plan.keep - plan.context
    padded = torch.from_numpy(mirror_pad(image.astype(np.float32), plan.context, after_y, after_x))

    model.eval()
    out = np.zeros((config.num_classes, rows * plan.keep, cols * plan.keep), dtype=np.float32)
    origins = tile_origins(height, width, plan.keep)
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = torch.stack([padded[:, y : y + plan.input_tile, x : x + plan.input_tile] for y, x in chunk])
        probs = model(batch.to(device)).float().softmax(dim=1).cpu().numpy()
        o = plan.offset
        for (y, x), p in zip(chunk, probs):
            out[:, y : y + plan.keep, x : x + plan.keep] = p[:, o : o + plan.keep, o : o + plan.keep]
    return out[:, :height, :width]


def predict_foreground(model: nn.Module, image: np.ndarray, config: ModelConfig, **kwargs: object) -> np.ndarray:
    """P(interior) of an (H, W) or (C, H, W) image: class 1 of ``predict_tiled``."""
    return predict_tiled(model, image, config, **kwargs)[1]  # type: ignore[arg-type]

"""Skip connections written into preallocated concatenation buffers: a fast-path setting of the
registry's own U-Nets (issue 20), same parameters, same values, same gradients.

``torch.cat`` allocates its output on every call. Here each decoder level's input (the cropped
skip and the up-sampled map, side by side) lives in one buffer kept across steps, and both
halves are written into it. The next forward writes the same buffer again, so a training step's
backward must run before the next forward, as in every training loop; autograd's version check
raises if it does not, so a misuse is an error, never a wrong gradient.
"""

from __future__ import annotations

from typing import Any

import torch


class CatInto(torch.autograd.Function):
    """``torch.cat([skip, up], dim=1)`` written into ``out``; the gradient splits like cat's."""

    @staticmethod
    def forward(ctx: Any, skip: torch.Tensor, up: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.cat([skip, up], dim=1, out=out)
        ctx.mark_dirty(out)
        ctx.split = skip.shape[1]
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return grad[:, : ctx.split], grad[:, ctx.split :], None


class ConcatBuffers:
    """One buffer per decoder level, made again only when the shape, type or device changes."""

    def __init__(self) -> None:
        self.buffers: dict[int, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        """A copied or saved model carries the setting, not the step's scratch memory."""
        return {"buffers": {}}

    def __deepcopy__(self, memo: dict[int, Any]) -> ConcatBuffers:
        return ConcatBuffers()

    def cat(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        shape = (skip.shape[0], skip.shape[1] + up.shape[1], *up.shape[2:])
        dtype = torch.result_type(skip, up)
        channels_last = up.dim() == 4 and up.is_contiguous(memory_format=torch.channels_last) and not up.is_contiguous()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        buffer = self.buffers.get(level)
        if (
            buffer is None
            or buffer.shape != shape
            or buffer.dtype != dtype
            or buffer.device != up.device
            or not buffer.is_contiguous(memory_format=layout)
            or buffer.is_inference() != torch.is_inference_mode_enabled()  # inference tensors cannot be saved
        ):
            buffer = torch.empty(shape, dtype=dtype, device=up.device, memory_format=layout)
            self.buffers[level] = buffer
        # a fresh alias each call: the kept tensor never takes on a step's autograd history (the
        # next backward would walk into the last step's freed graph), while the shared version
        # counter still lets autograd see an overwrite of what a pending backward saved
        return CatInto.apply(skip, up, buffer.detach())

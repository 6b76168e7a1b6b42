"""The fast path: the same network (same parameters, same outputs within the precision's
tolerance) executed faster, each technique a profile setting measured against eager in one run.

- ``compile``: a ``torch.compile`` mode (default, reduce-overhead, max-autotune,
  max-autotune-no-cudagraphs).
- ``cuda_graphs``: the whole eager step (forward, loss, backward, optimizer) captured once in a
  CUDA graph and replayed, so the host launches one graph instead of hundreds of kernels.
- ``fused_conv``: Inductor with its Triton convolution templates only, so each convolution's
  bias and ReLU run in the convolution's epilogue instead of as separate element-wise kernels.
- ``concat_buffers``: each skip and its up-sampled map written into a buffer kept across steps
  (``variants.concat_buffers``) instead of a new ``torch.cat`` output.

A setting that cannot run here is not an error and not a silent fallback: ``skip_reason`` says
why, and the profiler writes that reason as the configuration's row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from variants.unet import UNet, UNetConfig

if TYPE_CHECKING:
    from bench.profile import ProfileCfg

# Inductor options of ``fused_conv``: Triton convolution templates (with bias and activation fused
# into their epilogue) instead of cuDNN's kernels; set only where this torch has the option.
FUSED_CONV_OPTIONS: dict[str, str | bool] = {
    "max_autotune": True,
    "max_autotune_conv_backends": "TRITON",
    "epilogue_fusion": True,
}  # a convolution no template covers (the transposed up-convolutions) stays ATen's (cuDNN)
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # compile modes that capture graphs themselves


def skip_reason(cfg: ProfileCfg, device: torch.device) -> str | None:
    """Why ``cfg``'s fast-path settings cannot run on ``device``, or None when they can."""
    here = f"this ran on the {device.type}"
    if cfg.cuda_graphs:
        if device.type != "cuda":
            return f"cuda_graphs: CUDA graphs need a CUDA device; {here}"
        if cfg.compile in CUDAGRAPH_MODES:
            return f"cuda_graphs: compile mode {cfg.compile!r} captures CUDA graphs itself"
        if cfg.compile or cfg.fused_conv:
            return "cuda_graphs: captures the eager step; for a compiled network use compile mode 'reduce-overhead'"
        if cfg.mode == "train" and cfg.precision == "fp16":
            return "cuda_graphs: fp16 training's loss scaler checks for overflow on the host, which a graph cannot capture; use bf16"
    if cfg.breakdown and device.type == "cuda" and (cfg.cuda_graphs or cfg.compile in CUDAGRAPH_MODES):
        replayed = "cuda_graphs" if cfg.cuda_graphs else f"compile mode {cfg.compile!r}"
        return f"breakdown: {replayed} replays CUDA graphs, one launch to the profiler, so its time cannot be split by operation"
    if cfg.fused_conv:
        if device.type != "cuda":
            return f"fused_conv: Inductor's convolution templates are Triton kernels, which need a CUDA device; {here}"
        if cfg.compile:
            return "fused_conv: it compiles the network with its own Inductor options; leave compile unset"
    if cfg.concat_buffers:
        if cfg.compile or cfg.fused_conv:
            return "concat_buffers: an eager setting; a compiled network's concatenations are planned by Inductor"
        if not isinstance(cfg.model_config(), UNetConfig):
            return f"concat_buffers: {cfg.variant} is not one of the registry's own U-Nets, which alone have this path"
    return None


def runnable(model: nn.Module, cfg: ProfileCfg) -> nn.Module:
    """``model`` as the step will call it: with concatenation buffers, or compiled."""
    if cfg.concat_buffers:
        cast(UNet, model).use_concat_buffers(True)
    if cfg.fused_conv:
        import torch._inductor.config as inductor

        options: dict[str, Any] = {k: v for k, v in FUSED_CONV_OPTIONS.items() if hasattr(inductor, k)}
        return cast(nn.Module, torch.compile(model, options=options))
    if cfg.compile:
        return cast(nn.Module, torch.compile(model, mode=cfg.compile))
    return model


def cuda_graphed(body: Callable[[], None], reset: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``body`` captured in a CUDA graph: warmed up on a side stream (as capture requires),
    captured once, then replayed. ``reset`` runs before each warm-up step and before the capture
    (a training step's ``zero_grad``: the captured backward then writes the gradients in place)."""
    with torch.cuda.device(device):  # capture uses the current device's streams: make it the measured one
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                reset()
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        reset()
        with torch.cuda.graph(graph):
            body()
    return graph.replay

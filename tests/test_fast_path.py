"""The fast path (issue 20): the same network executed faster. Each setting must give the same
outputs and gradients as eager, and where it cannot run (no CUDA here) the profiler must write a
row that says why, never a silent fallback measured as if it had run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

import pytest
import torch
import torch.nn.functional as F

from bench.profile import ProfileCfg, measure
from bench.profile_suite import run_profile_suite
from bench.report import against_eager, profile_configurations
from bench.store import read_results
from variants import resolve_config

FAST = dict(warmup=1, min_reps=2, max_reps=3, max_seconds=0.5, input_size=188, batch_size=2)


def train_twice(concat_buffers: bool, channels_last: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two SGD steps of a small U-Net: the outputs of both forwards and the final weights."""
    torch.manual_seed(0)
    config = resolve_config("unet-16", base_width=8)
    model = config.build()
    if concat_buffers:
        model.use_concat_buffers(True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 1, 188, 188).contiguous(memory_format=layout)
    outputs = []
    for _ in range(2):
        logits = model(x)
        outputs.append(logits.detach().clone())
        target = torch.zeros(logits.shape[0], *logits.shape[-2:], dtype=torch.long)
        optimizer.zero_grad()
        F.cross_entropy(logits, target).backward()
        optimizer.step()
    return outputs, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_buffers_give_the_same_outputs_and_gradients_as_cat(channels_last: bool) -> None:
    """The second step reuses the buffers the first wrote; its forward and the weights after both
    updates (so both gradients) match torch.cat's to float rounding."""
    plain_out, plain_weights = train_twice(False, channels_last)
    fast_out, fast_weights = train_twice(True, channels_last)
    for a, b in zip(plain_out + plain_weights, fast_out + fast_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_second_forward_before_backward_is_an_error_not_a_wrong_gradient() -> None:
    model = resolve_config("unet-16", base_width=8).build()
    model.use_concat_buffers(True)
    x = torch.randn(1, 1, 188, 188)
    first = model(x).sum()
    model(x)  # overwrites the buffers the first forward's backward needs
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


def test_concat_buffers_survive_inference_mode_and_are_not_copied_with_the_model() -> None:
    """A forward under inference_mode leaves inference tensors behind, which autograd cannot
    save: the next training forward makes its buffers again. A copy or a saved model carries
    the setting, not the last step's scratch memory."""
    import copy

    model = resolve_config("unet-16", base_width=8).build()
    model.use_concat_buffers(True)
    x = torch.randn(1, 1, 188, 188)
    with torch.inference_mode():
        model(x)
    model(x).sum().backward()
    twin = copy.deepcopy(model)
    assert model.concat_buffers.buffers and twin.concat_buffers is not None and not twin.concat_buffers.buffers


def test_concat_buffers_are_measured_on_cpu_as_their_own_setting() -> None:
    m = measure(ProfileCfg("unet-16", mode="train", device="cpu", concat_buffers=True, **FAST))
    assert m.skipped is None and m.failed is None and len(m.step_seconds) >= 2
    rows = m.rows("run-x")
    assert {r.setting for r in rows} == {"concat_buffers"}
    assert json.loads(rows[0].extra)["fast_path"] == ["concat_buffers"]


@pytest.mark.parametrize(
    ("settings", "variant", "reason"),
    [
        ({"cuda_graphs": True}, "unet-16", "CUDA graphs need a CUDA device; this ran on the cpu"),
        ({"fused_conv": True}, "unet-16", "Triton kernels, which need a CUDA device"),
        ({"concat_buffers": True}, "smp-resnet18-unet", "not one of the registry's own U-Nets"),
        ({"concat_buffers": True, "compile": "default"}, "unet-16", "an eager setting"),
    ],
)
def test_a_setting_that_cannot_run_here_is_a_row_that_says_why(settings: dict, variant: str, reason: str) -> None:
    m = measure(ProfileCfg(variant, mode="train", device="cpu", **FAST, **settings))
    assert m.skipped is not None and reason in m.skipped and not m.step_seconds
    rows = m.rows("run-x")
    assert [r.metric for r in rows] == ["skipped"]
    assert reason in json.loads(rows[0].extra)["skipped"]
    config = resolve_config(variant)
    assert rows[0].input_size == config.valid_input_size(188) and rows[0].output_size == config.output_size(rows[0].input_size)


def test_a_fast_path_suite_reports_every_setting_against_eager(tmp_path: Path) -> None:
    """A profile suite lists the settings like any other; the report's runtime table shows each
    setting's line beside eager's, with the reason where a setting was skipped."""
    suite = tmp_path / "fast.toml"
    suite.write_text(
        '[suite]\nname = "fast"\n[defaults]\nmax_seconds = 0.3\nwarmup = 1\nmin_reps = 2\nmax_reps = 3\n\n'
        '[[sweep]]\nvariants = ["unet-16"]\nmodes = ["infer"]\nprecisions = ["fp32"]\ninput_sizes = [188]\n'
        'batch_sizes = [1]\ncuda_graphs = [false, true]\nconcat_buffers = [false, true]\n'
    )
    run_dir, done = run_profile_suite(suite, tmp_path / "out", device="cpu", log=lambda _: None)
    assert len(done) == 4
    table = profile_configurations(read_results(run_dir)).set_index("setting")
    assert set(table.index) == {"eager", "concat_buffers", "cuda_graphs", "cuda_graphs, concat_buffers"}
    assert table.loc["eager", "img/s"][0].isdigit() and table.loc["concat_buffers", "img/s"][0].isdigit()
    assert table.loc["cuda_graphs", "img/s"].startswith("skipped: cuda_graphs: CUDA graphs need a CUDA device")
    assert table.loc["eager", "x eager"] == "" and table.loc["cuda_graphs", "x eager"] == ""
    assert re.fullmatch(r"\d+\.\d\dx( \(intervals overlap\))?", table.loc["concat_buffers", "x eager"])


def test_against_eager_compares_within_one_run_and_says_when_intervals_overlap() -> None:
    def line(setting: str, run: str, img_s: tuple[float, float, float]) -> dict:
        return {"variant": "v", "mode": "train", "precision": "bf16", "batch_size": 8, "input_size": 572,
                "setting": setting, "_run": run, "_img_s": img_s}  # fmt: skip

    table = pd.DataFrame([
        line("channels_last", "r1", (100.0, 98.0, 102.0)),
        line("channels_last, cuda_graphs", "r1", (200.0, 196.0, 204.0)),  # resolved: 2.00x
        line("channels_last, concat_buffers", "r1", (101.0, 97.0, 105.0)),  # within eager's interval
        line("compile=default", "r2", (300.0, 290.0, 310.0)),  # no eager line in its own run
    ])  # fmt: skip
    assert against_eager(table) == ["", "2.00x", "1.01x (intervals overlap)", ""]


@pytest.mark.gpu
@pytest.mark.parametrize("settings", [{"cuda_graphs": True}, {"concat_buffers": True}, {"cuda_graphs": True, "concat_buffers": True}])
def test_each_eager_fast_path_setting_runs_on_a_gpu(settings: dict) -> None:
    for mode in ("infer", "train"):
        m = measure(ProfileCfg("unet-16", mode=mode, precision="bf16", channels_last=True, device="cuda", **FAST, **settings))
        assert m.skipped is None and m.failed is None and m.summary()["throughput"][0] > 0


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"cuda_graphs": True, "compile": "default"}, "for a compiled network use compile mode 'reduce-overhead'"),
        ({"cuda_graphs": True, "breakdown": True}, "cannot be split by operation"),
        ({"fused_conv": True, "compile": "default"}, "leave compile unset"),
        ({"compile": "max-autotune", "breakdown": True}, "replays CUDA graphs, one launch to the profiler"),
    ],
)
def test_fast_path_combinations_that_would_mismeasure_are_skipped_on_a_gpu(settings: dict, reason: str) -> None:
    m = measure(ProfileCfg("unet-16", mode="train", precision="bf16", device="cuda", **FAST, **settings))
    assert m.skipped is not None and reason in m.skipped


@pytest.mark.gpu
def test_cuda_graph_replay_gives_eager_outputs() -> None:
    """The replayed graph computes what the eager forward computes, in bf16."""
    from bench.fast_path import cuda_graphed

    torch.manual_seed(0)
    model = resolve_config("unet-16").build().cuda().eval()
    x = torch.randn(2, 1, 188, 188, device="cuda")
    out: list[torch.Tensor] = []

    def forward() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            out[:] = [model(x)]

    forward()
    eager = out[0].float().clone()
    cuda_graphed(forward, lambda: None, torch.device("cuda"))()
    torch.cuda.synchronize()
    torch.testing.assert_close(out[0].float(), eager, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_fused_convolutions_give_eager_outputs_within_bf16_tolerance() -> None:
    from bench.fast_path import runnable

    torch.manual_seed(0)
    model = resolve_config("unet-16").build().cuda().eval()
    x = torch.randn(2, 1, 188, 188, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(x).float()
        fused = runnable(model, ProfileCfg("unet-16", fused_conv=True, device="cuda"))(x).float()
    torch.testing.assert_close(fused, eager, rtol=2e-2, atol=2e-2)

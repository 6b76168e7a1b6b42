"""The one training loop: it learns, it resumes exactly, it stops cleanly on a NaN loss."""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.augment import AugmentCfg
from bench.checkpoint import UnsafeCheckpointError, load_checkpoint
from bench.config import TrainCfg
from bench.data import split_by_index, synthetic_em
from bench.metrics import label_cells, rand_scores
from bench.progress import EpochPrinter
from bench.train import NonFiniteLossError, StopTraining, fit, lr_factor, run_progress
from tests.conftest import REPO
from variants import resolve_config

TINY = dict(
    optimizer="adamw",
    lr=3e-3,
    momentum=0.9,
    steps_per_epoch=4,
    batch_size=4,
    tile=92,
    val_tile=92,
    val_thresholds="fixed",
    augment=AugmentCfg(elastic_sigma=4.0),
)


def tiny_setup(epochs: int, **changes: object):
    config = resolve_config("unet-original", base_width=8, depth=2)
    data = synthetic_em(5, 96, seed=0)
    train, val = split_by_index(data, [4])
    torch.manual_seed(0)
    cfg = TrainCfg(epochs=epochs, **{**TINY, **changes})  # type: ignore[arg-type]
    return config, config.build(), train, val, cfg


def test_fit_learns_on_synthetic_data() -> None:
    config, model, train, val, cfg = tiny_setup(epochs=12, steps_per_epoch=10)
    result = fit(model, config, train, val, cfg)
    losses = [h["train_loss"] for h in result.history]
    assert len(result.history) == 12 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses
    # predicting "all interior" merges every cell: V_rand of one segment is the bar to clear
    mask = val.samples[0].mask
    trivial = rand_scores(label_cells(np.ones_like(mask)), label_cells(mask))["v_rand"]
    assert result.best_metrics["v_rand"] > trivial + 0.3, (trivial, result.best_metrics["v_rand"])


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    """With a cosine schedule too: the learning rate is a function of the step, restored."""
    config, model, train, val, cfg = tiny_setup(epochs=3, schedule="cosine")
    straight = fit(model, config, train, val, cfg)

    def stop_after_first(state):  # an interrupted run: stops after epoch 0's checkpoint
        if state.epoch == 0:
            raise StopTraining

    config, model, train, val, cfg = tiny_setup(epochs=3, schedule="cosine")
    first = fit(model, config, train, val, cfg, callbacks=(stop_after_first,), checkpoint_dir=tmp_path)
    assert len(first.history) == 1
    config, model, train, val, cfg = tiny_setup(epochs=3, schedule="cosine")
    resumed = fit(model, config, train, val, cfg, checkpoint_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_a_timed_run_anneals_by_the_clock_when_the_clock_ends_it_first() -> None:
    timed = TrainCfg(epochs=10_000, schedule="cosine", max_minutes=5)
    assert run_progress(100, 150.0, timed) == pytest.approx(0.5), "half the clock, a sliver of the steps"
    assert lr_factor("cosine", run_progress(100, 300.0, timed)) == pytest.approx(0.0, abs=1e-12)
    assert run_progress(100, 200.0, timed, reserved_s=100.0) == 1.0, "the last validation's time is kept back"
    untimed = TrainCfg(epochs=2, steps_per_epoch=50, schedule="cosine")
    assert run_progress(50, 1e6, untimed) == 0.5, "no clock: steps alone"
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("poly", 1.0) == 0.0 and lr_factor("constant", 0.9) == 1.0


def test_epoch_lines_show_the_clock_and_the_time_in_training_steps() -> None:
    """The clock (validation included) is what --minutes counts, so the line shows it first."""
    config, model, train, val, cfg = tiny_setup(epochs=1)
    stream, states = io.StringIO(), []
    fit(model, config, train, val, cfg, callbacks=(EpochPrinter(1, stream), states.append))
    line = stream.getvalue()
    assert re.fullmatch(r"epoch 1/1  step 4  loss \S+  pixel error \S+  V_rand \S+  \d+s \(\d+s training\)\n", line), line
    assert states[0].elapsed_s > states[0].train_s > 0


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    config, model, train, val, cfg = tiny_setup(epochs=3)

    def explode(state):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 4 \(epoch 1\).*last\.pt"):
        fit(model, config, train, val, cfg, callbacks=(explode,), checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_pickle_payload_checkpoint_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt: refused to load"):
        load_checkpoint(path)


def test_the_refusal_of_a_pickle_payload_never_advises_weights_only_false(tmp_path: Path) -> None:
    """torch's message says re-running with weights_only=False "will likely succeed": the one
    thing an untrusted file must never get. The line names what was refused, and torch's warning
    about the pickle protocol does not reach the terminal."""
    from tests.conftest import assert_user_error, run_cli

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    result = run_cli("eval", str(evil))
    message = assert_user_error(result, "evil.pt: refused to load", "unsupported GLOBAL posix.system")
    assert "weights_only` set to `False`" not in message and "will likely succeed" not in message
    protocol4 = tmp_path / "protocol4.pt"
    protocol4.write_bytes(pickle.dumps({"model": 1}, protocol=4))  # a dict, but not torch's zip format
    assert_user_error(run_cli("eval", str(protocol4)), "protocol4.pt:")


def test_a_checkpoint_that_is_not_a_state_dict_or_was_edited_is_one_line(tmp_path: Path) -> None:
    """A bare tensor, a list, metadata that is not a dict, or weights of another variant or width
    under a checkpoint's metadata ended in a traceback; now one line naming the file."""
    from bench.checkpoint import save_checkpoint
    from bench.data import DataSpec
    from bench.job import TrainJob
    from tests.conftest import assert_user_error, run_cli

    job = TrainJob(variant="unet-16", data=DataSpec.parse("synthetic"), train=TrainCfg(), overrides={"base_width": 2})
    meta = job.to_meta([10, 11])
    weights = job.model_config().build().state_dict()
    other = TrainJob(variant="resunet", data=job.data, train=job.train, overrides={"base_width": 2})
    cases = {
        "tensor": (torch.zeros(3), "not a unet-bench checkpoint (it holds a Tensor, not a dict)"),
        "list": ([1, 2], "not a unet-bench checkpoint (it holds a list, not a dict)"),
        "meta_text": ({"model": weights, "meta": "unet-16"}, "do not make a unet-bench model"),
        "no_weights": ({"meta": meta}, "do not make a 'unet-16' model (KeyError: 'model')"),
        "other_variant": ({"model": weights, "meta": other.to_meta([10, 11])}, "'resunet' model (RuntimeError: Missing key"),
        "other_width": ({"model": weights, "meta": {**meta, "overrides": {"base_width": 4}}}, "size mismatch for"),
    }  # fmt: skip
    for name, (state, needle) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(state, path)
        assert_user_error(run_cli("eval", str(path)), f"{name}.pt: ", needle)
        assert_user_error(run_cli("predict", str(path), str(tmp_path), "-o", str(tmp_path / "out")), needle)
    assert not (tmp_path / "out").exists(), "nothing was written"
    save_checkpoint(tmp_path / "good.pt", {"model": weights, "meta": meta})
    assert load_checkpoint(tmp_path / "good.pt")["meta"] == meta


def test_a_run_folder_is_resumed_only_by_the_same_run(tmp_path: Path) -> None:
    """An earlier run's folder is never overwritten (nor its scores reported as a new run's), and
    --resume continues only the run it holds: another setting is named, a longer run is fine."""
    from tests.conftest import assert_user_error, run_cli

    out = tmp_path / "run"
    args = ["train", "--variant", "unet-original", "--data", "synthetic", "--val-sections", "10-11",
            "--epochs", "1", "-o", str(out), "--set", "model.base_width=4", "--set", "model.depth=2",
            "--set", "tile=92", "--set", "val_tile=92", "--set", "steps_per_epoch=2"]  # fmt: skip
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    saved = {name: (out / name).read_bytes() for name in ("last.pt", "best.pt")}
    again = run_cli(*args)
    assert_user_error(again, f"{out} already holds a training run (last.pt, best.pt)", "--resume", "-o")
    other = run_cli(*args, "--resume", "--set", "lr=0.002", "--set", "model.base_width=8")
    assert_user_error(other, "trained with other settings", "lr: 0.001 -> 0.002", "'base_width': 4", "'base_width': 8")
    assert {name: (out / name).read_bytes() for name in saved} == saved, "the earlier run is untouched"
    longer = run_cli(*[a if a != "1" else "2" for a in args], "--resume")
    assert longer.returncode == 0, longer.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1, "one more epoch, after the first"


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path: Path, signum: int) -> None:
    """SIGKILL (or Ctrl-C) a real `unet-bench train`, then `--resume`: no finished epoch is redone.
    Ctrl-C ends with one line that says how to go on, and exit 130."""
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "bench",
        "train",
        "--variant",
        "unet-original",
        "--data",
        "synthetic",
        "--val-sections",
        "10-11",
        "--epochs",
        "4",
        "-o",
        str(out),
        "--set",
        "model.base_width=4",
        "--set",
        "model.depth=2",
        "--set",
        "tile=92",
        "--set",
        "val_tile=92",
        "--set",
        "steps_per_epoch=30",
        "--set",
        "batch_size=2",
        "--set",
        "val_thresholds='fixed'",
    ]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    if signum == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1] == "unet-bench: interrupted; rerun the same command with --resume to continue"
    done_before = load_checkpoint(out / "last.pt")["epoch"]
    assert done_before < 3, "the kill came too late to test anything"

    resumed = subprocess.run(args + ["--resume", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    printed = resumed.stderr.splitlines()
    assert not any(line.startswith(f"epoch {done_before + 1}/") for line in printed), "a finished epoch ran again"
    assert any(line.startswith("epoch 4/4") for line in printed)
    import json

    history = json.loads(resumed.stdout)["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]


def test_test_split_is_kept_out_of_training_and_scored_alone(tmp_path: Path) -> None:
    """With test sections, training and checkpoint choice never see them, the final scores are
    on them, and `eval` of the checkpoint repeats those scores by default."""
    from bench.data import DataSpec, default_val_sections
    from bench.job import TrainJob, evaluate_checkpoint, run_job

    data = synthetic_em(8, 96, seed=0)
    train, val = split_by_index(data, [5], exclude=[6, 7])
    assert len(train) == 5 and len(val) == 1
    assert default_val_sections(12, exclude=[10, 11]) == [9]

    cfg = TrainCfg(epochs=1, **TINY)  # type: ignore[arg-type]
    job = TrainJob("unet-original", DataSpec.parse("synthetic:count=8,size=96"), cfg,
                   overrides={"base_width": 4, "depth": 2}, val_sections=(5,), test_sections=(6, 7))  # fmt: skip
    run = run_job(job, tmp_path / "run")
    assert run.split == "test 6-7"
    meta = load_checkpoint(run.checkpoint)["meta"]
    assert meta["test_sections"] == [6, 7] and meta["val_sections"] == [5]
    assert evaluate_checkpoint(run.checkpoint) == run.final
    on_val = evaluate_checkpoint(run.checkpoint, val_sections=[5])
    assert on_val != run.final, "the final scores are the test sections', not the validation section's"


def test_a_job_scores_its_best_epoch_with_or_without_a_checkpoint_folder(tmp_path: Path) -> None:
    """Validation chooses the model that is scored: a suite run keeps no checkpoint files, yet
    its final scores are those of the best validated epoch, exactly as `eval` of best.pt gives."""
    from bench.data import DataSpec
    from bench.job import TrainJob, run_job

    cfg = TrainCfg(epochs=4, **TINY)  # type: ignore[arg-type]
    job = TrainJob("unet-original", DataSpec.parse("synthetic:count=8,size=96"), cfg,
                   overrides={"base_width": 4, "depth": 2}, val_sections=(5, 6))  # fmt: skip
    with_files = run_job(job, tmp_path / "run")
    in_memory = run_job(job)
    assert in_memory.final == with_files.final
    assert in_memory.per_image == with_files.per_image and sorted(in_memory.per_image) == [5, 6]
    assert in_memory.fit.best_state is not None and with_files.fit.best_state is None
    # scored on the validation sections here: the final V_rand is the best epoch's, not the last one's
    best = max(h["v_rand"] for h in in_memory.fit.history)
    assert in_memory.final["v_rand"] == pytest.approx(best, abs=1e-12)


@pytest.mark.gpu
def test_tiles_are_cut_on_the_gpu_and_equal_the_hosts() -> None:
    """On a GPU the sampler keeps the images, labels and weight maps there and cuts each tile
    there (issue 20); the tiles are the very pixels the host would have cut."""
    from bench.train import TileSampler

    data = synthetic_em(count=3, size=96)
    host = TileSampler(data, 92, 4, 10.0, 5.0)
    gpu = TileSampler(data, 92, 4, 10.0, 5.0, device=torch.device("cuda"))
    assert gpu.entries[0].is_cuda and not host.entries[0].is_cuda
    tiles = [sampler.sample(4, torch.Generator().manual_seed(3)) for sampler in (host, gpu)]
    assert tiles[1].is_cuda and torch.equal(tiles[0], tiles[1].cpu())


def test_execution_settings_keep_old_job_keys_and_may_change_on_resume() -> None:
    """channels_last and compile change how steps run, not what they compute: off, a job's key
    is the key it had before the fields existed (committed results still match); on, it is
    another key; and a resume may switch them, like the device."""
    from dataclasses import asdict, replace

    from bench.checkpoint import resume_mismatch
    from bench.schema import config_hash
    from variants import resolve_config

    config = resolve_config("unet-16")
    before = {k: v for k, v in asdict(TrainCfg()).items() if k not in ("channels_last", "compile")}
    assert config_hash(config, TrainCfg(seed=3).identity()) == config_hash(config, before)
    fast = replace(TrainCfg(), channels_last=True, compile="default")
    assert config_hash(config, fast.identity()) != config_hash(config, TrainCfg().identity())
    assert resume_mismatch({"train_cfg": before}, {"train_cfg": fast.to_dict()}) == []


def test_fit_in_channels_last_computes_what_the_default_layout_computes() -> None:
    """The first step's loss (same weights, same tiles) to float rounding; after one AdamW update,
    which magnifies rounding where gradients are near zero, still within 1 %."""
    losses = []
    for changes in ({}, {"channels_last": True}):
        config, model, train, _, cfg = tiny_setup(epochs=2, steps_per_epoch=1, **changes)
        losses.append([h["train_loss"] for h in fit(model, config, train, None, cfg).history])
    assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-4)
    assert losses[1][1] == pytest.approx(losses[0][1], rel=1e-2)


@pytest.mark.gpu
def test_fit_with_a_compiled_forward_computes_what_eager_computes() -> None:
    losses = []
    for changes in ({}, {"compile": "default", "channels_last": True}):
        config, model, train, _, cfg = tiny_setup(epochs=1, steps_per_epoch=3, device="cuda", amp=False, **changes)
        losses.append(fit(model, config, train, None, cfg).history[0]["train_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)

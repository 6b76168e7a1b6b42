"""Runs that did not train are found, said so in their rows, and left out of every ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.config import TrainCfg
from bench.data import DataSpec, synthetic_em
from bench.job import TrainJob, run_job
from bench.metrics import CHALLENGE_THRESHOLDS, score_stack
from bench.report import build_report
from bench.store import read_results
from bench.verdict import trivial_scores, why_not_trained
from tests.test_report import GOLDEN

FALLING = [{"train_loss": 0.7}, {"train_loss": 0.4}]


@pytest.fixture(scope="module")
def scored() -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    data = synthetic_em(3, 96, seed=0)
    masks = [s.mask for s in data.samples]
    perfect = score_stack([m.astype(np.float32) for m in masks], masks, CHALLENGE_THRESHOLDS, warping=False)
    trivial = trivial_scores(data)
    # a constant prediction scores the same at every threshold the challenge tries
    for name, value in (("all interior", 1.0), ("all membrane", 0.0)):
        nine = score_stack([np.full(m.shape, value, np.float32) for m in masks], masks, CHALLENGE_THRESHOLDS, False)
        assert nine["v_rand"] == trivial[name]["v_rand"] and nine["pixel_error"] == trivial[name]["pixel_error"]
    return trivial, {**perfect, "prediction_std": 0.4}


def test_the_reasons_a_run_did_not_train(scored) -> None:
    trivial, perfect = scored
    assert why_not_trained(perfect, trivial, FALLING, "v_rand") is None
    constant = {**trivial["all interior"], "prediction_std": 0.0}
    assert "constant" in why_not_trained(constant, trivial, FALLING, "v_rand")
    as_trivial = {**trivial["all membrane"], "prediction_std": 0.2}
    reason = why_not_trained(as_trivial, trivial, FALLING, "v_rand")
    assert "does not beat the trivial" in reason and "V_rand" in reason
    flat = [{"train_loss": 0.69}, {"train_loss": 0.69}]
    assert "stayed flat" in why_not_trained(perfect, trivial, flat, "v_rand")
    # a metric where lower is better: the perfect pixel error beats both trivial ones
    assert why_not_trained(perfect, trivial, FALLING, "pixel_error") is None


def test_a_run_that_cannot_learn_is_marked(tmp_path: Path) -> None:
    """A learning rate of 1e-12 leaves the network as initialised: the job says it did not train."""
    frozen = TrainCfg(optimizer="adamw", lr=1e-12, epochs=2, steps_per_epoch=3, batch_size=2, tile=92, val_tile=92)
    job = TrainJob("unet-original", DataSpec.parse("synthetic:count=6,size=96"), frozen,
                   overrides={"base_width": 4, "depth": 2}, val_sections=(4,), test_sections=(5,))  # fmt: skip
    result = run_job(job)
    assert result.untrained is not None and set(result.trivial) == {"all interior", "all membrane"}


def test_untrained_runs_are_listed_and_left_out_of_rankings_deltas_and_the_front(tmp_path: Path) -> None:
    frame = read_results(GOLDEN)
    evals = frame[frame["stage"] == "eval"].drop_duplicates(["variant", "seed"])
    trained = evals.assign(metric="trained", value=1.0, extra="{}")
    failed = (trained["variant"] == "<b>&evil</b>") | ((trained["variant"] == "resunet") & (trained["seed"] == 1))
    trained.loc[failed, "value"] = 0.0
    trained.loc[failed, "extra"] = '{"reason": "its test prediction is constant"}'
    (tmp_path / "run").mkdir()
    pd.concat([frame, trained]).to_csv(tmp_path / "run" / "rows-all.csv", index=False)

    report = build_report(tmp_path / "run", tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    listed = sections["Runs that did not train (4)"].table
    assert sorted(zip(listed["variant"], listed["seed"])) == [("<b>&evil</b>", 0), ("<b>&evil</b>", 1),
                                                              ("<b>&evil</b>", 2), ("resunet", 1)]  # fmt: skip
    quality = sections["Quality per variant"].table
    assert "<b>&evil</b>" not in set(quality["variant"])
    assert quality[(quality["variant"] == "resunet") & (quality["metric"] == "v_rand")]["n"].item() == 2
    deltas = sections["Ablation deltas against unet-original"].table.set_index("variant")
    assert "<b>&evil</b>" not in deltas.index and deltas.loc["resunet", "pairs"] == 2
    assert "<b>&evil</b>" not in set(sections["Quality vs throughput (Pareto front)"].table["variant"])
    assert set(report.untrained["variant"]) == {"<b>&evil</b>", "resunet"}

"""pytest-benchmark micro-benchmarks: forward and forward + backward per family at a small size,
the elastic deformation, the border weight map and the metrics (Rand and information scores
beside skimage's, in one group). Not part of the test suite (collected only when this folder is
named):

    pytest bench/benchmarks/test_micro.py --benchmark-json micro.json
    unet-bench ingest micro.json --results results/micro      # rows in the one schema

On CUDA every benchmarked call ends with ``torch.cuda.synchronize()``, so the time covers the
GPU work and not only the kernel launches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.augment import AugmentCfg, augment_batch
from bench.losses import border_weight_map
from bench.metrics import Contingency, info_from_counts, label_cells, rand_from_counts, rand_scores, warping_error
from variants import resolve_config

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
FAMILIES = ["unet-original", "resunet", "inception-unet", "smp-resnet18-unet"]


def synced(fn):
    """Wrap ``fn`` so that CUDA work finishes inside the timed call."""
    if DEVICE.type != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize()

    return call


@pytest.mark.parametrize("variant", FAMILIES)
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
def test_model_step(benchmark, variant: str, mode: str) -> None:
    config = resolve_config(variant).tiny()
    side = config.valid_input_size(128)
    torch.manual_seed(0)
    model = config.build().to(DEVICE)
    x = torch.randn(2, config.in_channels, side, side, device=DEVICE)
    row_mode = "infer" if mode == "forward" else "train"  # the mode column of result rows
    benchmark.extra_info.update(variant=variant, mode=row_mode, input_size=side, batch_size=2)
    if mode == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    else:
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            model(x).float().mean().backward()

    benchmark(synced(step))


def test_elastic_deformation_572(benchmark) -> None:
    images = torch.rand(4, 1, 572, 572, device=DEVICE)
    labels = (torch.rand(4, 572, 572, device=DEVICE) > 0.5).float()
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    cfg = AugmentCfg(dihedral=False, grey=0.0)
    benchmark.extra_info.update(input_size=572, batch_size=4)
    benchmark(synced(lambda: augment_batch(images, labels, None, cfg, generator)))


def _masks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = rng.random((512, 512)) > 0.2
    pred = truth.copy()
    pred[rng.random((512, 512)) > 0.97] ^= True
    return pred, truth


def test_v_rand_512(benchmark) -> None:
    pred, truth = _masks()
    benchmark.extra_info.update(input_size=512)
    benchmark(lambda: rand_scores(label_cells(pred), label_cells(truth)))


@pytest.mark.benchmark(group="rand+info 512")
def test_rand_and_info_512_ours(benchmark) -> None:
    """Side by side with skimage below (same labels, same pytest-benchmark run): one shared
    sparse contingency feeds both scores."""
    pred, truth = (label_cells(m) for m in _masks())
    benchmark.extra_info.update(input_size=512)

    def score() -> None:
        counts = Contingency.of(pred, truth)
        rand_from_counts(counts), info_from_counts(counts)

    benchmark(score)


@pytest.mark.benchmark(group="rand+info 512")
def test_rand_and_info_512_skimage(benchmark) -> None:
    """skimage's reference functions on the same foreground-restricted problem, proposal
    background relabelled as singletons, as tests/test_metrics.py compares them."""
    from skimage.metrics import adapted_rand_error, variation_of_information

    pred, truth = (label_cells(m) for m in _masks())
    benchmark.extra_info.update(input_size=512)
    fg = truth > 0
    relabelled = pred.copy()
    background = (relabelled == 0) & fg
    relabelled[background] = relabelled.max() + 1 + np.arange(background.sum())

    def score() -> None:
        adapted_rand_error(truth, relabelled, ignore_labels=(0,)), variation_of_information(truth[fg], relabelled[fg])

    benchmark(score)


def test_weight_map_512(benchmark) -> None:
    _, truth = _masks()
    benchmark.extra_info.update(input_size=512)
    benchmark(lambda: border_weight_map(label_cells(truth), class_mask=truth))  # uncached: the computation itself


def test_warping_error_512(benchmark) -> None:
    pred, truth = _masks()
    benchmark.extra_info.update(input_size=512)
    benchmark(lambda: warping_error(pred, truth))

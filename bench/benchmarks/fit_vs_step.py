"""Does the training loop keep up with its step? ``fit()`` against the profiler, side by side.

``fit()`` draws tiles, deforms them with their labels and weight map on the device and takes a
weighted-cross-entropy step; the profiler times the bare training step of the same variant,
batch, tile and precision. Their ratio says how much of the hardware's pace the loop loses to
sampling, augmentation and bookkeeping (target on a GPU: at least 0.9). fit's first epoch is its
warm-up (and compilation); the second is timed, with no validation in it.

    python -m bench.benchmarks.fit_vs_step [--variant unet-original] [--tile 572] [--batch 8]
        [--precision bf16] [--channels-last] [--compile MODE] [--steps 30] [--data isbi2012]
        [--results results/gpu]
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

from bench.config import TrainCfg
from bench.data import load_data
from bench.device import resolve_device
from bench.environment import row_environment
from bench.profile import Precision, ProfileCfg, measure
from bench.rows import RowFactory
from bench.schema import COMPILE_MODES, make_extra, profile_setting
from bench.store import ResultWriter
from bench.train import fit
from variants import resolve_config


def fit_images_per_second(args: argparse.Namespace) -> float:
    """img/s of fit()'s second epoch of ``args.steps`` steps (the first warms up)."""
    config = resolve_config(args.variant, **args.overrides)
    cfg = TrainCfg(
        epochs=2, steps_per_epoch=args.steps, batch_size=args.batch, tile=args.tile,
        amp=args.precision == "bf16", device=args.device, channels_last=args.channels_last, compile=args.compile,
    )  # fmt: skip
    history = fit(config.build(), config, load_data(args.data), None, cfg).history
    return args.steps * args.batch / (history[1]["train_seconds"] - history[0]["train_seconds"])


def step_images_per_second(args: argparse.Namespace) -> float:
    """The profiler's training-step img/s for the same variant, batch, tile and precision."""
    precision: Precision = args.precision
    m = measure(
        ProfileCfg(
            args.variant, input_size=args.tile, batch_size=args.batch, mode="train", precision=precision,
            device=args.device, overrides=args.overrides, max_seconds=args.max_seconds,
            channels_last=args.channels_last, compile=args.compile,
        )
    )  # fmt: skip
    return float(m.summary()["throughput"][0])


def json_object(text: str) -> dict[str, Any]:
    """An --overrides value: a JSON object of model fields."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object of model fields, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="unet-original")
    parser.add_argument(
        "--overrides", type=json_object, default={}, help='model overrides as JSON, e.g. {"base_width": 8}'
    )
    parser.add_argument("--data", default="isbi2012", help="a folder, or a known data set by name")
    parser.add_argument("--tile", type=int, default=572)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="bf16: autocast, on CUDA only")
    parser.add_argument("--steps", type=int, default=30, help="steps per fit epoch (the second is timed)")
    parser.add_argument("--channels-last", action="store_true", help="the fast path's NHWC layout, in both")
    parser.add_argument("--compile", choices=COMPILE_MODES, help="torch.compile mode of both (default: eager)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="the profiler's cap on timed steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", help="also append the rows to RESULTS/fit-vs-step-<id>/")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.device = str(device)
    if args.precision == "bf16" and device.type != "cuda":  # fit() uses autocast on CUDA only
        parser.error(f"--precision bf16: fit() trains in bf16 on CUDA only; on the {device.type} use fp32")
    fit_ips, step_ips = fit_images_per_second(args), step_images_per_second(args)
    ratio = fit_ips / step_ips
    print(
        f"{args.variant} {args.precision} batch {args.batch} tile {args.tile} on {device}: fit {fit_ips:.2f} img/s, "
        f"profiler step {step_ips:.2f} img/s -> fit/step {ratio:.3f} (target at least 0.9 on a GPU)"
    )
    if args.results:
        factory = RowFactory(f"fit-vs-step-{uuid.uuid4().hex[:8]}", "fit-vs-step", device).bind(
            variant=args.variant, stage="profile", mode="train", precision=args.precision, batch_size=args.batch,
            input_size=args.tile, setting=profile_setting(args.channels_last, args.compile, ("fit",)),
            extra=make_extra(steps=args.steps, overrides=args.overrides, env=row_environment(device)),
        )  # fmt: skip
        rows = [
            factory.row("fit_throughput", fit_ips, unit="img/s"),
            factory.row("step_throughput", step_ips, unit="img/s"),
            factory.row("fit_to_step", ratio),
        ]
        print(f"rows written to {ResultWriter(Path(args.results) / factory.run_id).append(rows)}")


if __name__ == "__main__":
    main()

"""Does the profiler measure what a hand-written loop measures? Side by side, in one process.

Times training steps of one model two ways, in paired rounds (each method going first in every
other round, so that machine load and warm caches favour neither): ``bench.profile`` (its own
warm-up, synchronisation and timing) and a bare loop of forward, loss, backward and SGD step
around ``time.perf_counter``. Each round gives the ratio of the two medians; the benchmark prints
the median ratio over the rounds with its 95 % interval. The target is within 2 %. On a shared
2-core machine single steps scatter by 10 % or more, hence many short rounds rather than a few
long ones.

    python -m bench.benchmarks.profiler_overhead [--variant unet-16] [--input 188] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from bench.device import resolve_device
from bench.profile import ProfileCfg, measure, median_confidence_interval
from variants import resolve_config


def bare_loop(variant: str, input_size: int, batch: int, steps: int, device: torch.device) -> list[float]:
    """The simplest honest training-step timing: the reference the profiler must agree with."""
    config = resolve_config(variant)
    side = config.valid_input_size(input_size)
    torch.manual_seed(0)
    model = config.build().to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.99)
    x = torch.randn(batch, config.in_channels, side, side, device=device)
    out = config.output_size(side)
    target = torch.randint(0, config.num_classes, (batch, out, out), device=device)
    times = []
    for i in range(steps + 1):  # the first step is warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="unet-16")
    parser.add_argument("--input", type=int, default=188)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round and method")
    # 20 rounds left an interval of about +-5 % on a 2-core machine, and one run in three printed 0.978
    parser.add_argument("--rounds", type=int, default=40, help="an even number: each method goes first as often")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        parser.error(f"--rounds {args.rounds}: an even number, at least 2, so that each method goes first as often")
    device = resolve_device(args.device)

    cfg = ProfileCfg(
        args.variant, input_size=args.input, batch_size=args.batch, mode="train", device=str(device),
        warmup=1, min_reps=args.steps, max_reps=args.steps, max_seconds=1e9, target_rel_ci=0.0,
    )  # fmt: skip
    ratios, profiler_ms, bare_ms = [], [], []
    for round_number in range(args.rounds):
        # which method goes first alternates: the second of a pair runs on memory and caches the
        # first left warm, and with a fixed order that alone read as a 1-3 % "overhead"
        timed = {
            "profiler": lambda: measure(cfg).step_seconds,
            "bare": lambda: bare_loop(args.variant, args.input, args.batch, args.steps, device),
        }
        order = list(timed) if round_number % 2 == 0 else list(reversed(timed))
        medians = {name: statistics.median(timed[name]()) for name in order}
        ratios.append(medians["profiler"] / medians["bare"])
        profiler_ms.append(medians["profiler"] * 1e3)
        bare_ms.append(medians["bare"] * 1e3)
    ratio = statistics.median(ratios)
    low, high = median_confidence_interval(ratios)
    result = {
        "variant": args.variant, "device": str(device), "batch": args.batch, "input": args.input,
        "rounds": args.rounds, "profiler_ms": round(statistics.median(profiler_ms), 2),
        "bare_loop_ms": round(statistics.median(bare_ms), 2), "ratio": round(ratio, 4),
        "ratio_ci": [round(low, 4), round(high, 4)],
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.variant} train step, batch {args.batch}, {device}: profiler {result['profiler_ms']} ms, "
            f"bare loop {result['bare_loop_ms']} ms -> ratio {ratio:.4f} [95 % interval {low:.4f}, {high:.4f}] "
            f"over {args.rounds} paired rounds (target within 2 %: {'yes' if abs(ratio - 1) <= 0.02 else 'NO'})"
        )


if __name__ == "__main__":
    main()

"""Elastic deformation: ``bench.augment`` (batched, torch) against the ``elasticdeform`` package.

Both deform 572x572 image + label pairs with the paper's settings (3x3 control grid, sigma
10 px, cubic image interpolation, nearest labels) on the same CPU, interleaved so that machine
load hits both alike. Prints the per-image time of each and their ratio.

    pip install --no-binary elasticdeform elasticdeform   # the wheel breaks under NumPy 2
    python -m bench.benchmarks.augment_vs_elasticdeform [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Literal

import numpy as np
import torch

from bench.augment import AugmentCfg, augment_batch

SIDE = 572


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import elasticdeform
    except ImportError:
        raise SystemExit("needs elasticdeform: pip install --no-binary elasticdeform elasticdeform") from None
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    images = rng.random((args.batch, SIDE, SIDE), dtype=np.float32)
    labels = (rng.random((args.batch, SIDE, SIDE)) > 0.5).astype(np.float32)
    timg = torch.from_numpy(images)[:, None]
    tlab = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(0)

    # like for like: the same interpolation order for the image, nearest for the labels
    pairings: dict[str, tuple[Literal["bicubic", "bilinear"], list[int]]] = {
        "cubic": ("bicubic", [3, 0]),
        "linear": ("bilinear", [1, 0]),
    }
    results = []
    for name, (mode, orders) in pairings.items():
        cfg = AugmentCfg(elastic_sigma=10.0, elastic_points=3, dihedral=False, grey=0.0, interpolation=mode)

        def ours(cfg: AugmentCfg = cfg) -> None:
            augment_batch(timg, tlab, None, cfg, generator)

        def theirs(orders: list[int] = orders) -> None:
            for image, label in zip(images, labels):
                elasticdeform.deform_random_grid([image, label], sigma=10, points=3, order=orders, mode="mirror")

        ours()  # warm-up
        theirs()
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            start = time.perf_counter()
            ours()
            ours_s.append((time.perf_counter() - start) / args.batch)
            start = time.perf_counter()
            theirs()
            theirs_s.append((time.perf_counter() - start) / args.batch)
        ours_ms, theirs_ms = statistics.median(ours_s) * 1e3, statistics.median(theirs_s) * 1e3
        results.append({
            "interpolation": name, "side": SIDE, "batch": args.batch, "threads": args.threads,
            "ours_ms_per_image": round(ours_ms, 2), "elasticdeform_ms_per_image": round(theirs_ms, 2),
            "speedup": round(theirs_ms / ours_ms, 1),
        })  # fmt: skip
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(
            f"{SIDE}x{SIDE} {r['interpolation']}, batch {r['batch']}, {r['threads']} threads: bench.augment "
            f"{r['ours_ms_per_image']:.1f} ms/image, elasticdeform {r['elasticdeform_ms_per_image']:.1f} ms/image "
            f"-> {r['speedup']:.1f}x faster (target >= 20x)"
        )


if __name__ == "__main__":
    main()

"""The ``unet-bench`` command line. Each sub-command is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from bench.console import format_table

# Errors a user can cause and fix; they print as one line, never a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError)


def cmd_list(args: argparse.Namespace) -> int:
    from variants import list_variants, summarize_variant

    names = list_variants(args.pattern)
    if not names:
        print(f"no variant matches {args.pattern!r}; try `unet-bench list` for all", file=sys.stderr)
        return 1
    rows = [summarize_variant(n, args.input) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["params (M)"] = row["params"] / 1e6
        row["size"] = f"{row['input_size']} -> {row['output_size']}"
    print(format_table(rows, ["name", "family", "params (M)", "gflops", "size", "description"]))
    print(f"\n{len(rows)} variants; GFLOPs = forward FLOPs per image at the input size shown.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-bench", description="Benchmark, ablate and profile U-Net segmentation networks."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered variants with parameters, FLOPs and sizes")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'unet-*' or 'res*'")
    p.add_argument("--input", type=int, default=572, metavar="N", help="reference input side (default 572)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"unet-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

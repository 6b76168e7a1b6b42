#!/bin/sh
# The prepared GPU check (issues 6 and 20), for the rare lent H100 / H200: 15 minutes of device
# time in all, one command at most 10 minutes. Two calls from the repository root, through the
# device tool with carry [".whl", ".data"], about 11 minutes together:
#
#   set -o pipefail; UNETBENCH_GIT_SHA=<sha> STEPS="tests profile fit overhead report" sh bench/gpu_check.sh 2>&1 | tee $OUT/gpu-check.log
#   set -o pipefail; UNETBENCH_GIT_SHA=<sha> STEPS=ablation sh bench/gpu_check.sh 2>&1 | tee $OUT/gpu-ablation.log
#
# (timeout_s 480 and 420, the sums of their steps' limits, 15 minutes at worst and about 11 as
# sized; pipefail, so that the call's exit is the script's, not tee's; the lent machine gets the
# working tree without .git, hence the sha).
# It has torch, timm, nvidia-ml-py, pandas, seaborn, scipy and scikit-image but not optuna, smp,
# MONAI, nnU-Net's networks or autorank, and ../shared does not travel: `sh bench/gpu_prepare.sh`
# stages their wheels in .whl/ and the ISBI 2012 sections in .data/ (both git-ignored, 14 MB)
# once, here; both calls carry [".whl", ".data"], and this script installs and points at them.
#
# Steps (STEPS, default all of them), each under its own time limit, results packed after each:
#   tests     the CUDA-only tests (marked gpu): profiler, fast path, energy             120 s
#   profile   the fast-path suite (bench/suites/gpu-fast.toml: each setting beside eager at
#             572 px, bf16, with energy per image; a 2.5-minute budget) into results/gpu 180 s
#   fit       fit() against the profiler's step, same variant, batch, tile, precision,
#             channels_last (FIT_ARGS replaces that)                                     60 s
#   overhead  the profiler against a bare loop, on the GPU (paired rounds)               60 s
#   micro     the micro-benchmarks on the GPU, ingested into results/gpu                 50 s
#   report    reports/gpu from results/gpu                                               40 s
#   ablation  the full-size ablation (bench/suites/ablation-gpu.toml) and its report    400 s
# Only a few files may come back, so with $OUT set, the results and reports written are packed
# into $OUT/gpu-check.tar.gz. Back here: unpack it in the repository root, `unet-bench report
# results/gpu -o reports/gpu`, commit. A second lease goes on where the first stopped (the
# profile suite and the ablation both resume). SUITE=cpu-smoke, FIT_ARGS (split on spaces, so no
# space inside one argument) and ABLATION=<a small suite> run the same steps in a minute on any
# machine (tested).
set -u
needs="import optuna, monai, segmentation_models_pytorch, autorank, dynamic_network_architectures"
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "$needs" 2>/dev/null; then  # the lent machine only
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
[ -d .data ] && export UNETBENCH_DATA="$PWD/.data"  # the staged data sets, found by name
work="${WORK:-.}"  # results/ and reports/ are written under it (tests use a temporary folder)
[ -n "${OUT:-}" ] && OUT=$(cd "$OUT" && pwd)  # absolute: pack runs in $work
results="$work/results/gpu"
ablation="${ABLATION:-ablation-gpu}"
ablation_name=$(basename "$ablation" .toml)
steps=" ${STEPS:-tests profile fit overhead micro report ablation} "
status=0
wants() { case "$steps" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
step() {  # step SECONDS COMMAND...: run it under a time limit; a failure is reported, not fatal
  limit=$1
  shift
  echo "== $*"
  timeout "$limit" "$@" || { echo "== exit $? from: $*"; status=1; return 1; }
}
pack() {  # with $OUT set: what this check writes, in one archive there, replaced whole
  [ -n "${OUT:-}" ] || return 0
  written=$(cd "$work" && ls -d results/gpu reports/gpu "results/$ablation_name" "reports/$ablation_name" 2>/dev/null)
  [ -n "$written" ] || return 0
  (cd "$work" && tar -czf "$OUT/gpu-check.tar.part" $written) \
    && mv "$OUT/gpu-check.tar.part" "$OUT/gpu-check.tar.gz" && echo "packed into $OUT/gpu-check.tar.gz" \
    || { echo "== packing into $OUT failed"; status=1; }
}
cuda=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))')
if [ "$cuda" = 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
  device=cuda
else
  device=cpu
fi
if wants tests && [ "$cuda" = 1 ]; then
  step 120 python3 -m pytest -q -p no:cacheprovider -o addopts= -m gpu tests/test_profile.py tests/test_fast_path.py
fi
if wants profile; then
  step "${PROFILE_SECONDS:-180}" python3 -m bench profile --suite "${SUITE:-gpu-fast}" --results "$results" --resume \
    ${MINUTES:+--minutes "$MINUTES"}
  pack
fi
if wants fit; then
  step 60 python3 -m bench.benchmarks.fit_vs_step --device "$device" --results "$results" ${FIT_ARGS:---channels-last}
  pack
fi
if wants overhead && [ "$cuda" = 1 ]; then
  # 4 rounds: measure() counts FLOPs on the meta device each round (seconds at 572 px), and a GPU's steps scatter little
  step 60 python3 -m bench.benchmarks.profiler_overhead --device cuda --variant unet-original --input 572 --batch 4 \
    --rounds 4 --steps 10
fi
if wants micro && [ "$cuda" = 1 ]; then
  step 50 python3 -m pytest -q -p no:cacheprovider -o addopts= bench/benchmarks/test_micro.py -k model_step \
    --benchmark-max-time 0.5 --benchmark-json "$work/micro-gpu.json" \
    && step 30 python3 -m bench ingest "$work/micro-gpu.json" --results "$results"
fi
if wants report; then
  step 40 python3 -m bench report "$results" -o "$work/reports/gpu"
  pack
fi
if wants ablation; then
  step "${ABLATION_SECONDS:-400}" python3 -m bench run "$ablation" --resume -o "$work/results" --reports "$work/reports"
  pack
fi
exit $status

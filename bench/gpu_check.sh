#!/bin/sh
# The prepared GPU check (issue 6): the whole GPU profile suite in one command, for the rare
# lent H100 / H200 (15 minutes of device time in all, one command at most 10 minutes). From the
# repository root, through the device tool with carry [".whl"] and timeout 600:
#
#   UNETBENCH_GIT_SHA=<sha of HEAD here> sh bench/gpu_check.sh 2>&1 | tee $OUT/gpu-check.log
#
# (the lent machine gets the working tree without .git, hence the sha). It has torch, timm,
# pandas, seaborn, scipy and tifffile but not segmentation-models-pytorch; carry its wheel
# (once, here; /.whl/ is git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform any -d .whl segmentation-models-pytorch==0.6.0
#
# Steps, each under its own time limit so that the packing at the end always runs:
#   1. the CUDA-only tests (tests marked gpu);
#   2. the profile suite (bench/suites/gpu.toml) into results/gpu, rows written as they come;
#   3. the micro-benchmarks on the GPU, ingested into results/gpu;
#   4. the report, into reports/gpu.
# Only a few files may come back from the device, so with $OUT set, results/gpu and
# reports/gpu are packed into $OUT/gpu-check.tar.gz. Back here: unpack it in the repository
# root, `unet-bench report results/gpu -o reports/gpu`, commit. SUITE=cpu-smoke runs the same
# steps in seconds on any machine (tested).
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
work="${WORK:-.}"  # results/gpu and reports/gpu are written under it (tests use a temporary folder)
results="$work/results/gpu"
status=0
step() {  # step SECONDS COMMAND...: run it under a time limit; a failure is reported, not fatal
  limit=$1
  shift
  echo "== $*"
  timeout "$limit" "$@" || { echo "== exit $? from: $*"; status=1; return 1; }
}
pack() {  # with $OUT set: results/gpu and reports/gpu into one archive there, replaced whole
  [ -n "${OUT:-}" ] || return 0
  (cd "$work" && tar -czf "$OUT/gpu-check.tar.part" results/gpu $(ls -d reports/gpu 2>/dev/null)) \
    && mv "$OUT/gpu-check.tar.part" "$OUT/gpu-check.tar.gz" && echo "packed into $OUT/gpu-check.tar.gz"
}
cuda=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))')
if [ "$cuda" = 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  step 90 python3 -m pytest -q -p no:cacheprovider -o addopts= -m gpu tests/test_profile.py
fi
step "${PROFILE_SECONDS:-430}" python3 -m bench profile --suite "${SUITE:-gpu}" --results "$results" \
  ${MINUTES:+--minutes "$MINUTES"}
pack
if [ "$cuda" = 1 ]; then
  step 50 python3 -m pytest -q -p no:cacheprovider -o addopts= bench/benchmarks/test_micro.py -k model_step \
    --benchmark-max-time 0.5 --benchmark-json "$work/micro-gpu.json" \
    && step 30 python3 -m bench ingest "$work/micro-gpu.json" --results "$results"
fi
step 60 python3 -m bench report "$results" -o "$work/reports/gpu"
pack
exit $status

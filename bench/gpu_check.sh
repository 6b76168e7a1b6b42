#!/bin/sh
# The prepared GPU check (issue 6): the whole GPU profile suite in one command, for the rare
# lent H100 / H200 (15 minutes of device time in all). Run from the repository root:
#
#   device run, carry [".whl"], timeout 600:   sh bench/gpu_check.sh
#
# The lent machine has torch, timm, pandas, seaborn, scipy and tifffile but not
# segmentation-models-pytorch; carry its wheel (once, here; /.whl/ is git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform any -d .whl segmentation-models-pytorch==0.6.0
#
# Results go to $OUT/results/gpu (the device's return folder) or results/gpu, with the report
# beside them. Back here: copy results/gpu into results/, `unet-bench report results/gpu -o
# reports/gpu`, commit. SUITE=cpu-smoke runs the same steps in seconds on any machine (tested).
set -eu
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
root="${OUT:-.}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 -m bench profile --suite "${SUITE:-gpu}" --results "$root/results/gpu" ${MINUTES:+--minutes "$MINUTES"}
python3 -m bench report "$root/results/gpu" -o "$root/reports/gpu"

#!/bin/sh
# What bench/gpu_check.sh needs on a lent GPU machine, staged once here in git-ignored folders
# that its calls carry: .whl/, the wheels that machine lacks (it has torch, timm, nvidia-ml-py,
# pandas, scipy, scikit-image, seaborn, statsmodels, tqdm; ../.library/device/KINDS.md), for
# Python 3.12 on x86-64 (--no-deps: each package's own missing needs are named too); and
# .data/isbi2012/train, a transient copy of the shared ISBI 2012 sections (6 MB; ../shared does
# not travel), which gpu_check.sh finds through $UNETBENCH_DATA. Neither is ever committed.
set -eu
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl \
  optuna alembic sqlalchemy greenlet colorlog mako \
  segmentation-models-pytorch==0.6.0 monai \
  autorank baycomp
# nnU-Net's networks publish 0.3.x as a source archive only (pure Python): built into a wheel here
python3 -m pip wheel -q --no-deps -w .whl "dynamic-network-architectures>=0.3.1,<0.4"
mkdir -p .data/isbi2012
rm -rf .data/isbi2012/train && cp -r ../shared/data/isbi2012/train .data/isbi2012/train
du -sh .whl .data

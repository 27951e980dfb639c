#!/usr/bin/env bash
# Session 11: the block80 BERT engine end to end, converted and timed in one device call with the kernels of an
# earlier commit (a worktree in .devbuild/base) and of this tree; then the GPU end-to-end tests on this tree.
# On the GPU host after .gpu/install.sh; carry .devbuild/ort-include and .devbuild/base.
# usage: OUT=$OUT bash bench/gpu/s11/scripts/e2e_ab.sh
set -u
ROOT=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT/base $OUT/new
mkdir -p .devbuild/base/.devbuild && cp -r .devbuild/ort-include .devbuild/base/.devbuild/  # (e2e_spec.sh reads it there)
(cd .devbuild/base && OUT=$OUT/base CONVERT_TIMEOUT=250 SPEC=bert_block80 bash bench/gpu/e2e_spec.sh wgmma 2>&1 | sed 's/^/base  /')
OUT=$OUT/new CONVERT_TIMEOUT=250 SPEC=bert_block80 bash bench/gpu/e2e_spec.sh wgmma 2>&1 | sed 's/^/new   /'
[ "${TESTS:-1}" = 1 ] && PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include SPARSIFY_CACHE_DIR=/tmp/spc \
  timeout 120 python3 -m pytest -m gpu -q tests/test_gpu_e2e.py > $OUT/e2e-tests.log 2>&1; tail -3 $OUT/e2e-tests.log

#!/usr/bin/env bash
# Session 18, one device call: MiniLM's FFN2 weights of layers 4 and 5 (trained, 90% unstructured) ordered along K
# with the tail session 17 gave permute.tail_rows (a dense column's excess past K / 2 fits in it) against the fixed
# 128-row tail before it, each as the cover with its fused bias + residual epilogue: extra k-steps (FORM 3), the
# CTA-shared residual (FORM 1), the pair order (FORM 2); cuBLAS alone and with the same element-wise ops beside.
# Weights: python bench/cuda/s17/minilm_weights.py MODEL DIR (new tail) and the same with permute.tail_rows
# returning TAIL_ROWS (old tail), each DIR holding ffn2_l4.npy and ffn2_l5.npy.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c1 W=".devbuild/s18/w_old .devbuild/s18/w_new" bash bench/cuda/s18/tail_run.sh
# GPU host (carry the tar, both W dirs, .gpu/py): CACHE_TAR=.devbuild/s18/c1.tar.xz W="..." OUT=$OUT bash bench/cuda/s18/tail_run.sh
set -u
cd "$(dirname "$0")/../../.."
R=${ROUNDS:-5}
TILES="2x96x64x4x1x0x3 2x96x64x4x1x0x1 2x96x64x4x1x0x2 2x128x128x3x0x0x3"
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for w in $W; do for f in ffn2_l4 ffn2_l5; do
    AB_WEIGHT=$w/$f.npy AB_EPI=ba .venv/bin/python bench/cuda/ab.py 4096 384 1536 unstructured-wgmma 0.1 1 $TILES
  done; done
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
for f in ffn2_l4 ffn2_l5; do for w in $W; do
  echo "== $f $w"
  AB_WEIGHT=$w/$f.npy AB_EPI=ba timeout -k 5 120 python3 bench/cuda/ab.py 4096 384 1536 unstructured-wgmma 0.1 $R $TILES \
    2>&1 | grep -v Warning | tee -a $OUT/ab.txt
done; done

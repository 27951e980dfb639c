#!/usr/bin/env bash
# Session 17, one device call: the cover's tiles at MiniLM's shapes (hidden 384, FFN 1536), K reordered (no
# residual), each with the epilogue conversion fuses there (b: bias; ba: bias + residual add; bg: bias + erf GELU),
# against cuBLAS alone and cuBLAS followed by the same element-wise ops in torch. Alternating A/B (bench/cuda/ab.py).
# Kernels prebuilt on the dev machine:
#   . bench/cuda/s17/tiles.sh; AB_BUILD_ONLY=1 SPARSIFY_CACHE_DIR=.devbuild/s17/c AB_EPI=... python bench/cuda/ab.py ...
#   tar -cJf .devbuild/s17/c.tar.xz -C .devbuild/s17/c .
# usage (GPU host, carry .devbuild/s17/c.tar.xz and .gpu/py): CACHE_TAR=.devbuild/s17/c.tar.xz OUT=$OUT bash bench/cuda/s17/minilm_tiles.sh
set -u
cd "$(dirname "$0")/../../.."
. bench/cuda/s17/host.sh
. bench/cuda/s17/tiles.sh
R=${ROUNDS:-3}; P=unstructured-korder-wgmma
ab() { AB_EPI=$1 timeout -k 5 ${T:-120} python3 bench/cuda/ab.py ${@:2} 2>&1 | grep -v Warning | tee -a $OUT/ab.txt; }
ab b 4096 384 384 $P 0.1 $R $T1
ab bg 4096 1536 384 $P 0.1 $R $T1
ab b 4096 1536 384 $P 0.1 $R $T2
ab ba 4096 384 1536 $P 0.1 $R $T1
ab ba 4096 384 384 $P 0.1 $R $T1

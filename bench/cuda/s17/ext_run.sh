#!/usr/bin/env bash
# Session 17, one device call: the cover with its residual's chunks of X loaded again in extra k-steps (FORM 3)
# against the CTA-shared residual (FORM 1) and the pair order (FORM 2), on MiniLM's trained weights ordered as
# conversion orders them (bench/cuda/s17/minilm_weights.py), each with the epilogue conversion fuses there; GPU
# tests of the cover and compute-sanitizer memcheck of the FORM 3 cases first.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s17/c3 W=.devbuild/s17/w bash bench/cuda/s17/ext_run.sh
# GPU host (carry the tar, W and .gpu/py): CACHE_TAR=.devbuild/s17/c3.tar.xz W=.devbuild/s17/w OUT=$OUT bash bench/cuda/s17/ext_run.sh
set -u
cd "$(dirname "$0")/../../.."
R=${ROUNDS:-3}
RUNS=("ffn1_l1 bg 4096 1536 384 2x96x64x4x1x0x1 2x96x64x4x1x0x3 2x96x64x4x1x0x2 3x128x64x4x1x0x1 3x128x64x4x1x0x3"
      "ffn1_l0 bg 4096 1536 384 2x96x64x4x1x0x1 2x96x64x4x1x0x3 3x128x64x4x1x0x1 3x128x64x4x1x0x3"
      "ffn1_l5 bg 4096 1536 384 2x96x64x4x1x0x1 2x96x64x4x1x0x3"
      "attn_out_l3 ba 4096 384 384 2x96x64x4x1x0x1 2x96x64x4x1x0x3 2x96x64x4x1x0x2 3x64x64x4x1x0x1 3x64x64x4x1x0x3"
      "ffn2_l4 ba 4096 384 1536 2x96x64x4x1x0x1 2x96x64x4x1x0x3 2x128x128x3x0x0x1 2x128x128x3x0x0x3"
      "ffn2_l5 ba 4096 384 1536 2x96x64x4x1x0x1 2x96x64x4x1x0x3 2x96x64x4x1x0x2")
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for r in "${RUNS[@]}"; do
    set -- $r
    AB_WEIGHT=$W/$1.npy AB_EPI=$2 .venv/bin/python bench/cuda/ab.py $3 $4 $5 unstructured-wgmma 0.1 1 ${@:6}
  done
  .venv/bin/python bench/cuda/s17/test_libs.py  # the GPU tests' libraries
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  SPARSIFY_GPU_BACKEND=pycuda timeout 200 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py \
    -k "cover or nm_wgmma" > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
  SPARSIFY_GPU_BACKEND=pycuda timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu -q \
    tests/test_cuda_kernels.py -k "300 and cuda_cover and (bgr3 or k200n136 or plain and k264n136 or ta1 and k1000n264)" \
    > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
fi
for r in "${RUNS[@]}"; do
  set -- $r
  echo "== $1"
  AB_WEIGHT=$W/$1.npy AB_EPI=$2 timeout -k 5 90 python3 bench/cuda/ab.py $3 $4 $5 unstructured-wgmma 0.1 $R ${@:6} 2>&1 \
    | grep -v Warning | tee -a $OUT/ab.txt
done

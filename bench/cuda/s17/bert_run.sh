#!/usr/bin/env bash
# Session 17, one device call: at BERT's shapes, the cover's forms on random 90% weights: K as given in the pair
# order (FORM 2) against its chunks loaded again (FORM 3: most chunks), and K reordered as conversion orders it
# (unstructured-korder-wgmma; at (4096, 3072, 768) the order leaves 60-120 entries past two in its last rows) with
# the residual added (FORM 1) against extra steps (FORM 3); then the kernel benchmark's unstructured rows (FORM 0).
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s17/c4 bash bench/cuda/s17/bert_run.sh
# GPU host (carry the tar and .gpu/py): CACHE_TAR=.devbuild/s17/c4.tar.xz OUT=$OUT bash bench/cuda/s17/bert_run.sh
set -u
cd "$(dirname "$0")/../../.."
R=${ROUNDS:-3}
RUNS=("unstructured-wgmma 4096 768 768 3x128x128x3x0x0x2 3x128x128x3x0x0x3"
      "unstructured-wgmma 4096 3072 768 4x128x128x3x0x0x2 4x128x128x3x0x0x3"
      "unstructured-wgmma 4096 768 3072 3x128x128x3x0x0x2 3x128x128x3x0x0x3"
      "unstructured-korder-wgmma 4096 3072 768 4x128x128x3x0x0x1 4x128x128x3x0x0x3 3x128x128x3x0x0x3")
BENCH="--patterns unstructured-wgmma,unstructured-korder-wgmma --shapes 4096x768x768,4096x3072x768,4096x768x3072 --densities 0.1"
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE)
  for r in "${RUNS[@]}"; do
    set -- $r
    AB_BUILD_ONLY=1 .venv/bin/python bench/cuda/ab.py $2 $3 $4 $1 0.1 1 ${@:5}
  done
  .venv/bin/python -m sparsify_onnx.bench.kernels $BENCH --build-only
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
for r in "${RUNS[@]}"; do
  set -- $r
  timeout -k 5 90 python3 bench/cuda/ab.py $2 $3 $4 $1 0.1 $R ${@:5} 2>&1 | grep -v Warning | tee -a $OUT/ab.txt
done
timeout 200 python3 -m sparsify_onnx.bench.kernels $BENCH --json $OUT/bench.json > $OUT/bench.log 2>&1
echo "bench rc=$?"; tail -12 $OUT/bench.log

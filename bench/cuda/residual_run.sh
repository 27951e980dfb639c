#!/usr/bin/env bash
# Session 16, one device call: the cover's GPU tests and memcheck, then alternating A/B timings (bench/cuda/ab.py)
# of the cover's residual against cuBLAS: the K-ordered weight with an outlier column (unstructured-outlier-wgmma)
# and without (unstructured-korder-wgmma), K as given in both forms (tile field 7: 1 k's own order, 2 pair order),
# and ALT="name=dir ...": the same outlier weights with the kernels of other checkouts (their sparsify_onnx and
# bench/cuda in dir). NCU=1: ncu stall reasons of the outlier kernel at (4096, 768, 768). Kernels prebuilt on the dev
# machine into CACHE (AB_BUILD_ONLY=1); carry CACHE, the ALT dirs and .gpu/py.
# usage: CACHE=.devbuild/c16|CACHE_TAR=.devbuild/c16.tar.xz [ALT="old=.devbuild/old"] [STEP=tests|bench]
#        [KORDER=0] [ASGIVEN=0] [ASGIVEN_SHAPES="4096x768x768 ..."] [FORMS="1 2"] [NCU=1] OUT=$OUT bash bench/cuda/residual_run.sh
set -u
cd "$(dirname "$0")/../.."
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1 SPARSIFY_WGMMA=1
mkdir -p $SPARSIFY_CACHE_DIR
[ -n "${CACHE:-}" ] && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/
[ -n "${CACHE_TAR:-}" ] && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR  # (the same, packed: tar -cJf X -C CACHE .)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
R=${ROUNDS:-3}
if [ "${STEP:-all}" != bench ]; then
  SPARSIFY_GPU_BACKEND=pycuda timeout 200 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py -k "cover or nm_wgmma" \
    > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
  SPARSIFY_GPU_BACKEND=pycuda timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu -q -x \
    tests/test_cuda_kernels.py -k "300 and cuda_cover and (k200n264 or k1000n264 or bgr2 or k200n136 or ta1)" \
    > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
fi
[ "${STEP:-all}" = tests ] && exit 0
ab() { timeout -k 5 ${T:-90} python3 "$@" 2>&1 | grep -v Warning; }
for s in "4096 384 1536" "4096 768 768" "4096 3072 768" "4096 768 3072"; do
  ab bench/cuda/ab.py $s unstructured-outlier-wgmma 0.1 $R auto | tee -a $OUT/ab-outlier.txt
  for a in ${ALT:-}; do
    (cd ${a#*=} && PYTHONPATH=/tmp/site:$(pwd) ab bench/cuda/ab.py $s unstructured-outlier-wgmma 0.1 $R auto) | sed "s/^/${a%%=*} /" | tee -a $OUT/ab-outlier.txt
  done
  [ "${KORDER:-1}" = 1 ] && ab bench/cuda/ab.py $s unstructured-korder-wgmma 0.1 $R auto | tee -a $OUT/ab-korder.txt
done
if [ "${NCU:-0}" = 1 ]; then
  timeout 200 ncu --kernel-name kernel -c 1 --section SpeedOfLight --section WarpStateStats --section SourceCounters \
    python3 bench/cuda/one.py 4096 768 768 unstructured-outlier-wgmma 0.1 > $OUT/ncu-outlier.txt 2>&1
  echo "ncu rc=$?"; grep -E "Duration|Stall|stall|Warp Cycles" $OUT/ncu-outlier.txt | head -20
fi
[ "${ASGIVEN:-1}" = 1 ] || exit 0
# K as given, the cover in k's own order (FORM 1) and in the pair order (FORM 2), at the default tiles
for s in ${ASGIVEN_SHAPES:-4096x768x768 4096x3072x768 4096x768x3072}; do
  set -- ${s//x/ }
  t=3x128x128x3x0x0; [ $2 -ge 2048 ] && t=4x128x128x3x0x0
  ab bench/cuda/ab.py $1 $2 $3 unstructured-wgmma 0.1 $R $(for f in ${FORMS:-1 2}; do echo ${t}x$f; done) | tee -a $OUT/ab-as-given.txt
done

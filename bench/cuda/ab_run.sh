#!/usr/bin/env bash
# One device call: the CUDA GPU tests, memcheck on the newest wgmma cases, then alternating A/B timings
# (bench/cuda/ab.py) of wgmma tile variants against cuBLAS. Kernels prebuilt on the dev machine into CACHE;
# carry CACHE and .gpu/py.
# usage: on the dev machine  BUILD=1 CACHE=.devbuild/cacheN bash bench/cuda/ab_run.sh   (compiles every kernel)
#        on the GPU host     CACHE=.devbuild/cacheN bash bench/cuda/ab_run.sh
set -u
cd "$(dirname "$0")/../.."
ab() {  # the A/B sets: M N K pattern density rounds tiles... (-wgmma 2:4 and cover tile fields: NWG x BM x KS x STAGES x INFLIGHT x RS)
  if [ "${AB_SET:-}" = big13 ]; then  # session 13: the cover's first tile for wide weights at 8192^3 (95%, K reordered)
    timeout -k 5 400 python3 bench/cuda/ab.py 8192 8192 8192 unstructured-korder-wgmma 0.05 3 3x128x128x3x0x0 4x128x128x3x0x0
    return
  fi
  if [ "${AB_SET:-}" = refine ]; then  # session 13: K ordered with what stays past two in its last 128 k (refine_order), read from the stages
    timeout -k 5 200 python3 bench/cuda/ab.py 4096 3072 768 unstructured-korder-wgmma 0.1 5 3x128x128x3x0x0 4x128x128x3x0x0 3x128x64x4x1x0 4x128x64x4x1x0 3x128x128x3x1x0 2x128x64x4x0x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 3072 unstructured-korder-wgmma 0.1 5 3x128x128x3x0x0 3x128x64x4x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-horder1-wgmma 0.1 5 3x128x64x4x1x0 3x128x128x3x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-korder-wgmma 0.1 5 3x128x64x4x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 3072 768 2:4-wgmma 0.5 5 4x128x64x4x1x0 3x128x128x3x0x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 3072 768 unstructured-wgmma 0.1 5 4x128x128x3x0x0 3x128x128x3x0x0
    return
  fi
  if [ "${AB_SET:-}" = mc ]; then  # session 12: the B images multicast in 2-CTA clusters along M (8th field MC; at b8e6ea1, taken out)
    T="128x32x4x1x0x2x1 128x32x4x0x0x2x3 128x32x3x1x0x2x2 128x32x4x1x0x2x1x2 128x32x3x1x0x2x2x2 128x32x4x0x0x2x2x2 256x32x4x1x0x2x2x2 64x32x4x0x0x0x1x2"
    [ "${AB_SHAPES:-all}" != big ] && for s in "4096 3072 768" "4096 768 768" "4096 768 3072"; do
      timeout -k 5 150 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 $T
    done
    [ "${AB_SHAPES:-all}" != big ] && timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block64-wgmma 0.1 5 64x32x4x0x0x0x1 64x32x4x0x0x0x1x2 128x32x4x1x0x2x1x2
    [ "${AB_SHAPES:-all}" != bert ] && timeout -k 5 240 python3 bench/cuda/ab.py 8192 8192 8192 block32-wgmma 0.1 3 256x32x4x1x0x2x2 256x32x4x1x0x2x2x2 128x32x4x1x0x2x1 128x32x4x1x0x2x1x2 128x32x3x1x0x2x2x2
    return
  fi
  if [ "${AB_SET:-}" = cp ]; then  # session 12: compact groups (8th field CP 2 / 4; 12 / 14: wgmma under a guard predicate; at 33d55aa, taken out)
    T="128x32x4x1x0x2x1 128x32x4x0x0x2x3 128x32x4x1x0x2x1x2 128x32x4x0x0x2x3x2 128x32x4x1x0x2x1x12"
    T4="128x32x4x1x0x2x1x4 128x32x4x0x0x2x3x4 64x32x4x1x0x2x1x4 64x32x4x0x0x2x3x4 128x32x4x1x0x2x1x14"
    [ "${AB_SHAPES:-all}" != big ] && for s in "4096 3072 768" "4096 768 768" "4096 768 3072"; do
      timeout -k 5 150 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 $T $T4
    done
    [ "${AB_SHAPES:-all}" != bert ] && timeout -k 5 240 python3 bench/cuda/ab.py 8192 8192 8192 block32-wgmma 0.1 3 256x32x4x1x0x2x2 256x32x4x1x0x2x2x2 128x32x4x1x0x2x1x4 128x32x4x0x0x2x3x4 64x32x4x1x0x2x1x4 256x32x3x1x0x2x2x4
    return
  fi
  if [ "${AB_SET:-}" = tma4 ]; then  # session 11, sixth call: X resident per m-tile (TM 4; at fffe8d7, taken out after)
    T="128x32x4x1x0x2x1 128x32x4x0x0x2x3 128x32x4x0x0x2x4 128x32x4x1x0x2x4 128x32x3x0x0x2x4 128x32x6x0x0x2x4"
    for s in "4096 3072 768" "4096 768 768"; do
      timeout -k 5 120 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 $T
    done
    timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block64-wgmma 0.1 5 64x32x4x0x0x0x1 128x32x4x0x0x2x4 64x32x4x0x0x2x4
    timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block32-wgmma 0.2 5 128x32x4x1x0x2x1 128x32x4x0x0x2x3 128x32x4x0x0x2x4
    return
  fi
  if [ "${AB_SET:-}" = tma3 ]; then  # session 11, fifth call: persistent CTAs (TM 3) against the best so far
    for s in "4096 3072 768" "4096 768 768" "4096 768 3072"; do
      timeout -k 5 120 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 128x32x4x1x0x2x1 128x32x3x1x0x2x2 128x32x4x1x0x2x3 128x32x4x0x0x2x3 128x32x3x1x0x2x3 64x32x4x1x0x2x3
    done
    timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block64-wgmma 0.1 5 64x32x4x0x0x0x1 64x32x4x0x0x0x3 128x32x4x1x0x2x3
    timeout -k 5 200 python3 bench/cuda/ab.py 8192 8192 8192 block32-wgmma 0.1 3 256x32x4x1x0x2x2 256x32x4x1x0x2x3 128x32x4x1x0x2x3
    return
  fi
  if [ "${AB_SET:-}" = tma2 ]; then  # session 11, second call: thread 0 issuing (TM 2, 4 CTAs per SM), BM 256
    T="128x32x4x1x0x2x1 128x32x4x1x0x2x2 128x32x3x1x0x2x2 128x32x4x0x0x2x2 64x32x4x1x0x2x2 256x32x3x1x0x2x1 256x32x4x1x0x2x2"
    for s in "4096 3072 768" "4096 768 768" "4096 768 3072"; do
      timeout -k 5 120 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 128x64x3x0 $T
    done
    timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block64-wgmma 0.1 5 128x64x3x0 64x32x4x0x0x0x1 64x32x4x1x0x2x2 128x32x4x1x0x2x2
    timeout -k 5 200 python3 bench/cuda/ab.py 8192 8192 8192 block32-wgmma 0.1 3 128x64x3x0 256x32x4x1x0x0x1 256x32x4x1x0x2x2 128x32x4x1x0x2x2 128x32x6x1x0x2x2
    return
  fi
  if [ "${AB_SET:-}" = tma ]; then  # session 11: the block kernel's TMA form (7th tile field) against the plain form
    T="128x32x4x0x0x0x1 128x32x4x1x0x0x1 128x32x6x1x0x0x1 64x32x4x0x0x0x1 128x32x4x1x0x2x1"
    for s in "4096 3072 768" "4096 768 768" "4096 768 3072"; do
      timeout -k 5 120 python3 bench/cuda/ab.py $s block32-wgmma 0.1 5 128x64x3x0 64x64x3x0 $T
    done
    timeout -k 5 120 python3 bench/cuda/ab.py 4096 3072 768 block64-wgmma 0.1 5 128x64x3x0 128x32x4x1x0x0x1 64x32x4x0x0x0x1
    timeout -k 5 200 python3 bench/cuda/ab.py 8192 8192 8192 block32-wgmma 0.1 3 128x64x3x0 128x32x4x1x0x0x1 128x32x6x1x0x0x1 256x32x4x1x0x0x1
    return
  fi
  if [ "${AB_SET:-}" = ressmem ]; then  # session 9, fourth call: a few residual entries from shared memory
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-horder1-wgmma 0.1 5 3x128x64x4x1x0 3x128x128x3x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-horder-wgmma 0.1 5 3x128x64x4x1x0 3x128x128x3x1x0
    return
  fi
  if [ "${AB_SET:-}" = nm128 ]; then  # session 9, third call: the 2:4 kernel with the natural cover's best tile
    for s in "4096 768 768" "4096 768 3072" "4096 3072 768"; do
      timeout -k 5 90 python3 bench/cuda/ab.py $s 2:4-wgmma 0.5 5 3x128x64x4x1x0 3x128x128x3x0x0 3x128x128x3x1x0 4x128x128x3x0x0 4x128x64x4x1x0
    done
    return
  fi
  if [ "${AB_SET:-}" = horder ]; then  # session 9, second call: K ordered per head of 64 (attention's output)
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-horder-wgmma 0.1 5 3x128x64x4x1x0 3x128x128x3x0x0 3x128x128x3x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py 4096 768 768 unstructured-korder-wgmma 0.1 5 3x128x64x4x1x0 3x128x128x3x1x0
    return
  fi
  for s in "4096 768 768" "4096 768 3072" "4096 3072 768"; do
    timeout -k 5 60 python3 bench/cuda/ab.py $s 2:4-wgmma 0.5 3 3x128x64x4x1x0 4x128x64x4x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py $s unstructured-korder-wgmma 0.1 3 3x128x64x4x1x0 4x128x64x4x1x0 3x128x128x3x0x0 3x128x128x3x1x0
    timeout -k 5 90 python3 bench/cuda/ab.py $s unstructured-wgmma 0.1 3 3x128x128x3x0x0 4x96x128x3x0x0 4x128x128x3x0x0
  done
  [ "${BIG:-0}" = 1 ] && timeout -k 5 150 python3 bench/cuda/ab.py 8192 8192 8192 2:4-wgmma 0.5 3 2x256x64x3x1x8 3x128x64x4x1x8
}
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$CACHE PYTHONPATH=$PWD PATH=$PWD/.venv/bin:$PATH
  python3 - <<'PY'  # the GPU tests' libraries, as tests/test_cuda_kernels.py builds them
import os, sys
sys.path.insert(0, "tests")
from cuda_cases import CASES, build_case
from sparsify_onnx.tune.build import build_shared
print(build_shared([build_case(i)[3][0] for i in range(len(CASES))], name="test_cuda_kernels"))
srcs = build_case([c[0] for c in CASES].index("cuda_nm_sparselt"), seed=99)[3]
for fam in ("cuda_tile_wgmma", "cuda_bcsr_wgmma", "cuda_nm_wgmma", "cuda_cover_wgmma"):
    print(build_shared(build_case([c[0] for c in CASES].index(fam), seed=5)[3], name=f"test_wgmma_fallback_{fam}"))
os.environ["SPARSIFY_NO_CUSPARSELT"] = "1"
print(build_shared(srcs, name="test_nm_fallback"))
PY
  [ "${AB:-1}" = 1 ] && AB_BUILD_ONLY=1 ab
  exit
fi
export SPARSIFY_CACHE_DIR=/tmp/spcache SPARSIFY_GPU_BACKEND=pycuda PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/
[ -n "${CACHE_TAR:-}" ] && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR  # more kernels, compressed (the 64 MiB carry)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout -k 5 ${TESTS_TIMEOUT:-200} python3 -m pytest -m gpu -q tests/test_cuda_kernels.py ${TESTS_K:+-k "$TESTS_K"} > $OUT/tests.log 2>&1
  echo "tests rc=$?"; tail -4 $OUT/tests.log
  # (every GPU kernel test: ~5 s on the H200 in session 12; MEMCHECK_K narrows it)
  timeout -k 5 ${MEMCHECK_TIMEOUT:-120} compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu -q -x tests/test_cuda_kernels.py \
    ${MEMCHECK_K:+-k "$MEMCHECK_K"} > $OUT/memcheck.log 2>&1
  echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
fi
[ "${AB:-1}" = 1 ] && ab 2>&1 | grep --line-buffered -v Warn | tee $OUT/ab.log | grep -v "^round"
if [ -n "${BENCH:-}" ]; then  # the kernel benchmark (python -m sparsify_onnx.bench.kernels) with these arguments
  timeout ${BENCH_TIMEOUT:-300} python3 -m sparsify_onnx.bench.kernels --isolate --json $OUT/bench.json $BENCH > $OUT/bench.log 2>&1
  echo "bench rc=$?"; grep -v Warning $OUT/bench.log | tail -40
fi
if [ -n "${NCU:-}" ]; then  # tiles to profile at 8192^3, 75%: L2 hit rate and throughputs
  for t in $NCU; do
    timeout 120 ncu --kernel-name kernel -c 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats \
      python3 bench/cuda/one.py 8192 8192 8192 tile-wgmma 0.25 $t > $OUT/ncu-$t.txt 2>&1
    grep -E "Duration|L2 Hit|DRAM Through|L2 Cache Through|Issued Warp|Eligible Warps" $OUT/ncu-$t.txt | sed "s/^/$t /"
  done
fi

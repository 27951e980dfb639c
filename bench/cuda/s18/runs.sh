# Sourced by session 18's device scripts. RUNS: entries "M N K pattern tile [tile ...]" at density ${DENSITY:-0.1}.
#   runs_build         dev machine: every entry's kernels (and, with TEST_LIBS=1, the GPU tests' libraries) into
#                      $CACHE, then $CACHE.tar.xz to carry
#   runs_tests K MK    GPU host: tests/test_cuda_kernels.py -k K (all of it for "") and compute-sanitizer memcheck of
#                      -k MK (none for ""), logs in $OUT
#   runs_ab LINES      GPU host: each entry A/B against cuBLAS over $R rounds (bench/cuda/ab.py), the last LINES lines
#                      of each into $OUT/ab.txt
D=${DENSITY:-0.1}
R=${ROUNDS:-3}
runs_build() {
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for r in "${RUNS[@]}"; do
    set -- $r
    .venv/bin/python bench/cuda/ab.py $1 $2 $3 $4 $D 1 ${@:5}
  done
  [ "${TEST_LIBS:-0}" = 1 ] && .venv/bin/python bench/cuda/s17/test_libs.py
  tar -cJf $CACHE.tar.xz -C $CACHE .
}
runs_tests() {
  SPARSIFY_GPU_BACKEND=pycuda timeout 300 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py ${1:+-k "$1"} \
    > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
  [ -z "$2" ] && return
  SPARSIFY_GPU_BACKEND=pycuda timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu \
    -q tests/test_cuda_kernels.py -k "$2" > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
}
runs_ab() {
  local lines=$1 r
  for r in "${RUNS[@]}"; do
    set -- $r
    echo "== $1 $2 $3 $4"
    timeout -k 5 150 python3 bench/cuda/ab.py $1 $2 $3 $4 $D $R ${@:5} 2>&1 | grep -v Warning | tail -$lines \
      | tee -a $OUT/ab.txt
  done
}

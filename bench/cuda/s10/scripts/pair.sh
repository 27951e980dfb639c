# Session 10: A/B of this tree's block kernels against a worktree of an earlier commit in .devbuild/base (each
# side in its own process: the kernels have the same names), the shapes and tiles of $SETS (one ab.py line each).
# Set up:  git worktree add .devbuild/base <commit>
# usage:   BUILD=1 bash bench/cuda/s10/scripts/pair.sh          (dev machine: compiles both sides' kernels)
#          OUT=$OUT bash bench/cuda/s10/scripts/pair.sh         (GPU host; carry .devbuild/cpair, .devbuild/base, .gpu/py)
# (run6 also timed a third side, bench/cuda/s10/scripts/nopair.py: this tree with the pairing turned off)
set -u
ROOT=$PWD
SETS=${SETS:-bench/cuda/s10/scripts/sets-run8.txt}
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$ROOT/.devbuild/cache-pair AB_BUILD_ONLY=1 PATH=$ROOT/.venv/bin:$PATH
  while read -r line; do
    (cd $ROOT/.devbuild/base && PYTHONPATH=$ROOT/.devbuild/base python3 bench/cuda/ab.py $line) &
    PYTHONPATH=$ROOT python3 bench/cuda/ab.py $line
    wait
  done < $SETS
  mkdir -p .devbuild/cpair && tar -cJf .devbuild/cpair/cache.tar.xz -C .devbuild/cache-pair .
  exit
fi
export SPARSIFY_CACHE_DIR=/tmp/spcache SPARSIFY_GPU_BACKEND=pycuda PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && tar -xJf .devbuild/cpair/cache.tar.xz -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
while read -r line; do
  echo "=== $line"
  (cd .devbuild/base && PYTHONPATH=/tmp/site:$ROOT/.devbuild/base timeout 120 python3 bench/cuda/ab.py $line 2>&1 | tail -5 | sed 's/^/base   /')
  PYTHONPATH=/tmp/site:$ROOT timeout 120 python3 bench/cuda/ab.py $line 2>&1 | tail -5 | sed 's/^/new    /'
done < $SETS

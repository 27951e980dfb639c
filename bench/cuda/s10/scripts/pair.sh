# session 10: block-column pairing + batched prologue lookups, A/B against the previous template (.devbuild/base)
# usage: BUILD=1 bash .devbuild/s10/pair.sh (dev machine)  |  OUT=$OUT bash .devbuild/s10/pair.sh (GPU host)
set -u
ROOT=$PWD
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$ROOT/.devbuild/cache14 AB_BUILD_ONLY=1 PATH=$ROOT/.venv/bin:$PATH
  while read -r line; do
    (cd $ROOT/.devbuild/base && PYTHONPATH=$ROOT/.devbuild/base python3 bench/cuda/ab.py $line) &
    PYTHONPATH=$ROOT python3 bench/cuda/ab.py $line
    wait
  done < .devbuild/s10/sets.txt
  exit
fi
export SPARSIFY_CACHE_DIR=/tmp/spcache SPARSIFY_GPU_BACKEND=pycuda PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && tar -xJf .devbuild/c14tar/cache.tar.xz -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
while read -r line; do
  echo "=== $line"
  (cd .devbuild/base && PYTHONPATH=/tmp/site:$ROOT/.devbuild/base timeout 120 python3 bench/cuda/ab.py $line 2>&1 | tail -5 | sed 's/^/base   /')
  PYTHONPATH=/tmp/site:$ROOT timeout 120 python3 bench/cuda/ab.py $line 2>&1 | tail -5 | sed 's/^/new    /'
done < .devbuild/s10/sets.txt

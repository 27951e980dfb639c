# Sourced by session 17's device scripts on the GPU host: the prebuilt kernels of $CACHE_TAR into the compile cache,
# pycuda from .gpu/py, PYTHONPATH, and $OUT.
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1 SPARSIFY_WGMMA=1
mkdir -p $SPARSIFY_CACHE_DIR
tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT

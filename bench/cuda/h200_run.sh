#!/usr/bin/env bash
# One device call: GPU tests (pycuda), compute-sanitizer memcheck on small cases, kernel benchmark.
# Kernels are precompiled on the dev machine (bench.kernels --build-only with SPARSIFY_CACHE_DIR=.devbuild/cacheN)
# and carried; CACHE=.devbuild/cacheN points here at that folder. See NOTES-cuda.md.
# usage: bash bench/cuda/h200_run.sh [bench args...]
set -u
cd "$(dirname "$0")/../.."
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR
[ -f .devbuild/cache.tar.xz ] && python3 -c "import tarfile; tarfile.open('.devbuild/cache.tar.xz').extractall('/tmp/spcache')"
[ -n "${CACHE:-}" ] && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/   # a precompiled cache folder (carried)
[ -n "${CACHE_TAR:-}" ] && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR  # the same, as .tar.xz (64 MiB carry limit)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee $OUT/gpu.txt
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  SPARSIFY_GPU_BACKEND=pycuda timeout 150 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py 2>&1 | tee $OUT/tests.log | tail -25
  SPARSIFY_GPU_BACKEND=pycuda timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 -m pytest -m gpu -q -x tests/test_cuda_kernels.py -k "(37 and (k136n200 or cuda_tile-fp16 or tile_wgmma or csr-fp16 or nm_sparselt-fp16-2of4-k64)) or (300 and (k264n520 or k1024n192))" \
    > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?" | tee -a $OUT/memcheck.log; tail -4 $OUT/memcheck.log
fi
SPARSIFY_DEBUG=1 timeout ${BENCH_TIMEOUT:-300} python3 -m sparsify_onnx.bench.kernels --isolate --json $OUT/bench.json "$@" > $OUT/bench.log 2>&1
echo "bench rc=$?"
grep -v "^| .*| [0-9]" $OUT/bench.log | grep -v Warning | tail -5
python3 - <<'PY'
import json, os
d = json.load(open(os.environ.get("OUT", "/tmp/out") + "/bench.json"))
best = {}
for r in d["results"]:
    if "ours_us" not in r: continue
    k = (r["M"], r["N"], r["K"], r["pattern"], r["density"])
    if k not in best or r["ours_us"] < best[k]["ours_us"]: best[k] = r
for k, r in sorted(best.items()):
    o = r.get("torch_bsr_triton_us", r.get("cusparse_csr_us", r.get("torch_2to4_cusparselt_us", "-")))
    o = f"{o:.1f}" if isinstance(o, float) else str(o)[:12]
    print(f"{k} tile={r['tile']} ours={r['ours_us']:.1f} cublas={r['cublas_us']:.1f} x{r['speedup_vs_cublas']:.2f} torch={o} err={r['rel_err']:.1e} {'lt' if r.get('uses_cusparselt') else ''}")
PY

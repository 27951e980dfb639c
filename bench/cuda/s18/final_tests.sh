#!/usr/bin/env bash
# Session 18, one device call: the GPU kernel tests, all of them, and memcheck of the 16-row TMA cases in wider
# block columns (16x32 with Y by TMA, 16x64), on the final code.
# Prebuild (dev machine): SPARSIFY_CACHE_DIR=.devbuild/s18/c7 python bench/cuda/s17/test_libs.py; tar -cJf .devbuild/s18/c7.tar.xz -C .devbuild/s18/c7 .
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c7.tar.xz OUT=$OUT bash bench/cuda/s18/final_tests.sh
set -u
cd "$(dirname "$0")/../../.."
RUNS=()
. bench/cuda/s18/runs.sh
. bench/cuda/s17/host.sh
runs_tests "" "bcsr_wgmma and (block16x32 or block16x64)"

"""Prebuild (dev machine) the libraries tests/test_cuda_kernels.py loads: every CASES kernel in one, and
test_fused_activation_per_element's, into $SPARSIFY_CACHE_DIR, so the GPU host compiles nothing.
usage: SPARSIFY_CACHE_DIR=DIR python bench/cuda/s17/test_libs.py"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests"))
from cuda_cases import ACTIVATION_CASES, CASES, activation_case, build_case  # noqa: E402

from sparsify_onnx.tune.build import build_shared  # noqa: E402

print(build_shared([build_case(i)[3][0] for i in range(len(CASES))], name="test_cuda_kernels"))
for fam, act in ACTIVATION_CASES:
    _, _, srcs, name = activation_case(fam, act)
    print(build_shared(srcs, name=name))

"""The custom-op library: op layer (sparsify_ops.cc, abi.h), ORT headers, compile cache and build.

`build_library(sources, out_dir, ...) -> BuildResult` compiles generated kernels plus the op layer into
``libsparsify_ops.so`` (exports only ``RegisterCustomOps``; registers ``ai.sparsify::SparseLinear`` and
``ai.sparsify::LayerNormGather``, whose kernels are the op layer's own: sparsify_ops.cc, layernorm_gather.cu).
"""
from .build import BuildResult, build_library
from .cache import CompileCache
from .ort_headers import api_version, find_ort_include

__all__ = ["BuildResult", "build_library", "CompileCache", "api_version", "find_ort_include"]

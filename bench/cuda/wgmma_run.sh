#!/usr/bin/env bash
# One device call: the wgmma tile-wise probe (prebuilt .devbuild/probe/wgmma_probe, see bench/cuda/wgmma_probe.cu)
# on an odd small shape (correctness: M, kept rows not multiples of the tile), then the issue-4 shapes at 75% and
# 90% sparsity, then cuBLAS dense for the same shapes (torch, same timing method).
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 200 .devbuild/probe/wgmma_probe 300 256 200 0.37  4096 3072 768 0.25  4096 768 3072 0.25 \
  4096 3072 768 0.1  8192 8192 8192 0.25  8192 8192 8192 0.1
python3 bench/cuda/lt_torch.py 4096,3072,768 4096,768,3072 8192,8192,8192 2>&1 | grep -v Warn

#!/usr/bin/env bash
# One device call: the cuSPARSELt probe (prebuilt .devbuild/probe/lt_probe) at BERT shapes and 8192^3,
# then torch's dense and 2:4 times for the same shapes. usage: bash bench/cuda/lt_run.sh
cd "$(dirname "$0")/../.."
LIB=$(python3 -c "import torch, os, glob; r=os.path.dirname(os.path.dirname(torch.__file__)); print(os.path.dirname((glob.glob(r+'/nvidia/**/libcusparseLt.so*', recursive=True) or [''])[0]))")
echo "libcusparseLt from: $LIB"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
for s in "4096 768 768" "4096 3072 768" "4096 768 3072" "8192 8192 8192"; do
  LD_LIBRARY_PATH=$LIB:$LD_LIBRARY_PATH timeout 150 .devbuild/probe/lt_probe $s ${MAXIDS:-34}
done
python3 bench/cuda/lt_torch.py 4096,768,768 4096,3072,768 4096,768,3072 8192,8192,8192

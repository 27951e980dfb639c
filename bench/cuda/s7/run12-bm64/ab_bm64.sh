for s in "4096 768 768" "4096 768 3072" "4096 3072 768"; do
  timeout 90 python3 bench/cuda/ab.py $s 2:4-wgmma 0.5 3 3x128x64x4x1x0 4x64x64x4x1x0 4x64x128x3x1x0 2x64x64x4x1x0
  timeout 90 python3 bench/cuda/ab.py $s unstructured-wgmma 0.1 3 3x128x128x3x0x0 4x64x64x4x1x0 4x64x128x3x1x0 4x64x64x6x1x0 2x64x64x4x1x0
done

// positive control for compute-sanitizer memcheck (session 12): a kernel writing one element past its buffer.
// nvcc -gencode arch=compute_90,code=sm_90 -cudart static -Xcompiler -fPIC -shared -o liboob.so memcheck_probe.cu
// compute-sanitizer --tool memcheck python3 -c "import ctypes; ctypes.CDLL('./liboob.so').oob(1024)"
// -> "Invalid __global__ write of size 4 bytes ... 1 bytes after the nearest allocation" (H200, session 12)
#include <cuda_runtime.h>
__global__ void k(float* p, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i <= n) p[i] = 1.f; }
extern "C" int oob(int n) {
  float* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) return 1;
  k<<<(n + 256) / 256, 256>>>(p, n);
  int rc = cudaDeviceSynchronize() != cudaSuccess;
  cudaFree(p);
  return rc;
}

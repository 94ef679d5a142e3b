// Host emulation of the tiny CUDA subset our kernels use, so kernels/*.cu compile as plain C++:
//   g++ -x c++ -include tests/_emu_cuda.h kernels/pool.cu + a generated launcher (tests/_emu.py).
// Launches run every block and every thread sequentially; that is exact for kernels without
// shared memory or __syncthreads (which is why ours have none).
#pragma once
#include <cmath>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct emu_dim3 { unsigned int x, y, z; };
// One translation unit per emulated .cu file, so plain statics are enough.
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }
// volatile keeps the host compiler from contracting these into an FMA, like the _rn intrinsics.
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }

// Activations' backward passes in one launch each (matches xcnn/functional.py).
//
// ReLU: dx = dy * (y > 0), computed as that product (not a select), so a NaN or inf in dy
// propagates exactly as on the NumPy path; the gradient at exactly 0 is 0.
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no shared memory, no __syncthreads
// (the same file compiles as C++ for the host emulation in tests/). 64-bit element counts;
// grid-stride loops.

template <typename T>
__device__ void relu_bwd_impl(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, long long total)
{
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step)
        dx[i] = dy[i] * (y[i] > (T)0 ? (T)1 : (T)0);
}

extern "C" __global__ void relu_bwd_f32(const float* dy, const float* y, float* dx, long long total)
{
    relu_bwd_impl<float>(dy, y, dx, total);
}

extern "C" __global__ void relu_bwd_f64(const double* dy, const double* y, double* dx, long long total)
{
    relu_bwd_impl<double>(dy, y, dx, total);
}

// Optimizer updates: one pass per parameter, or one launch for all of a network's parameters
// (matches xcnn/optim.py).
//
// SGD in the report's form, the same operations in the same order as the NumPy path:
//     v = v * momentum;  v = v + g;  v = v + p * weight_decay (when weight_decay != 0);
//     p = p - v * lr
// so the GPU update is bit-identical to the CPU one. Every product goes through an explicitly
// rounded multiply, which keeps nvcc from fusing a product and a sum into one FMA.
//
// The hyper-parameters are read from device memory, hyper = {lr, momentum, weight_decay}:
// a captured CUDA graph replays this launch with whatever the buffer holds, so a learning-rate
// schedule keeps working under graph replay (a scalar argument would be frozen at capture).
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no shared memory, no __syncthreads
// (the same file compiles as C++ for the host emulation in tests/). 64-bit element counts;
// grid-stride loops.

__device__ inline float optim_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double optim_mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__device__ inline void sgd_element(T* p, const T* g, T* v, long long i, T lr, T momentum, T weight_decay)
{
    T vi = optim_mul_rn(v[i], momentum);
    vi = vi + g[i];
    if (weight_decay != (T)0) vi = vi + optim_mul_rn(p[i], weight_decay);
    v[i] = vi;
    p[i] = p[i] - optim_mul_rn(vi, lr);
}

template <typename T>
__device__ void sgd_update_impl(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v,
                                long long total, const T* __restrict__ hyper)
{
    const T lr = hyper[0], momentum = hyper[1], weight_decay = hyper[2];
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step)
        sgd_element(p, g, v, i, lr, momentum, weight_decay);
}

// Every parameter of a network in one launch: ptrs holds (parameter, gradient, velocity) addresses
// per tensor, offsets[t] the first element of tensor t in the concatenation (offsets[tensors] ==
// total). A thread finds its tensor by a linear scan: networks have a handful of tensors.
template <typename T>
__device__ void sgd_update_multi_impl(const long long* __restrict__ ptrs, const long long* __restrict__ offsets,
                                      int tensors, long long total, const T* __restrict__ hyper)
{
    const T lr = hyper[0], momentum = hyper[1], weight_decay = hyper[2];
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int t = 0;
        while (t + 1 < tensors && offsets[t + 1] <= i) ++t;
        sgd_element((T*)ptrs[3 * t], (const T*)ptrs[3 * t + 1], (T*)ptrs[3 * t + 2], i - offsets[t],
                    lr, momentum, weight_decay);
    }
}

extern "C" __global__ void sgd_update_f32(float* p, const float* g, float* v, long long total, const float* hyper)
{
    sgd_update_impl<float>(p, g, v, total, hyper);
}

extern "C" __global__ void sgd_update_f64(double* p, const double* g, double* v, long long total,
                                          const double* hyper)
{
    sgd_update_impl<double>(p, g, v, total, hyper);
}

extern "C" __global__ void sgd_update_multi_f32(const long long* ptrs, const long long* offsets, int tensors,
                                                long long total, const float* hyper)
{
    sgd_update_multi_impl<float>(ptrs, offsets, tensors, total, hyper);
}

extern "C" __global__ void sgd_update_multi_f64(const long long* ptrs, const long long* offsets, int tensors,
                                                long long total, const double* hyper)
{
    sgd_update_multi_impl<double>(ptrs, offsets, tensors, total, hyper);
}

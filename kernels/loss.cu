// Softmax cross-entropy with integer labels, forward and backward in one pass (matches
// xcnn/functional.py's softmax_cross_entropy up to the last bits of exp/log).
//
// One thread per row of logits (N, K): the row's maximum, log-sum-exp, the row's loss
// -(z[label] - max - lse), and the gradient row (softmax - onehot) / N. The mean loss is the
// mean of loss_rows (a reduction on the Python side). It replaces about fifteen small kernels
// of the array-level version with one launch, which is what a small batch pays for on a GPU.
// A label outside 0..K-1 gives a NaN loss and a NaN gradient row (never a stray read), so the
// trainer's non-finite-loss check stops the run.
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no shared memory, no __syncthreads
// (the same file compiles as C++ for the host emulation in tests/). 64-bit row counts;
// grid-stride loops.

__device__ inline float xent_exp(float a) { return expf(a); }
__device__ inline double xent_exp(double a) { return exp(a); }
__device__ inline float xent_log(float a) { return logf(a); }
__device__ inline double xent_log(double a) { return log(a); }
__device__ inline float xent_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double xent_mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float xent_nan(float) { return __int_as_float(0x7fc00000); }
__device__ inline double xent_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }

template <typename T>
__device__ void softmax_xent_impl(const T* __restrict__ logits, const long long* __restrict__ labels,
                                  T* __restrict__ loss_rows, T* __restrict__ grad, long long total, int K)
{
    const T inv_n = (T)(1.0 / (double)total);
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        const T* z = logits + i * K;
        T* g = grad + i * K;
        const long long label = labels[i];
        if (label < 0 || label >= K) {
            loss_rows[i] = xent_nan((T)0);
            for (int k = 0; k < K; ++k) g[k] = xent_nan((T)0);
            continue;
        }
        T m = z[0];
        for (int k = 1; k < K; ++k) m = z[k] > m ? z[k] : m;
        T s = (T)0;
        for (int k = 0; k < K; ++k) s += xent_exp(z[k] - m);
        const T lse = xent_log(s);
        loss_rows[i] = -((z[label] - m) - lse);
        for (int k = 0; k < K; ++k) {
            T p = xent_exp((z[k] - m) - lse);
            if (k == label) p -= (T)1;
            g[k] = xent_mul_rn(p, inv_n);
        }
    }
}

extern "C" __global__ void softmax_xent_f32(const float* logits, const long long* labels, float* loss_rows,
                                            float* grad, long long total, int K)
{
    softmax_xent_impl<float>(logits, labels, loss_rows, grad, total, K);
}

extern "C" __global__ void softmax_xent_f64(const double* logits, const long long* labels, double* loss_rows,
                                            double* grad, long long total, int K)
{
    softmax_xent_impl<double>(logits, labels, loss_rows, grad, total, K);
}

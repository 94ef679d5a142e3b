// Average and max pooling over NCHW images, forward and backward (matches xcnn/functional.py).
//
// Average: the divisor is always KH*KW (padding counts as zeros).
// Max: padding is -inf and never wins; ties go to the FIRST maximum in row-major window
// order (strict >); a NaN beats any number and the first NaN wins (NumPy's rule); argmax
// (int32) is the offset kh*KW + kw inside the window.
// Backward kernels are gathers: one thread per input element sums the output gradients of
// every window covering it -- deterministic, no atomics. Windows are visited with kh, then
// kw, ascending (oh, ow descending), the order the NumPy path adds them in.
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no shared memory, no __syncthreads
// (the same file compiles as C++ for the host emulation in tests/). 64-bit element counts
// and flat indices, with `_i32` twins doing the index arithmetic in 32-bit int (the host picks them
// when every index of a launch, plus one grid's stride, stays below 2^31); grid-stride loops.
// Scalars: `total` is long long, the rest int.

// Explicitly rounded multiply: keeps nvcc from fusing `acc += dy * scale` into an FMA, so the
// GPU rounds exactly like the NumPy path (which computes dy * scale, then adds).
__device__ inline float pool_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double pool_mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float pool_neg_inf(float) { return -__int_as_float(0x7f800000); }
__device__ inline double pool_neg_inf(double) { return -__longlong_as_double(0x7ff0000000000000LL); }

template <typename T, typename I>
__device__ void avg_pool_fwd_impl(const T* __restrict__ x, T* __restrict__ y, long long total,
                                  int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                  int PH, int PW, int OH, int OW)
{
    (void)N; (void)C;  // the flat (n, c) index is enough
    const T scale = (T)(1.0 / ((double)KH * KW));
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const int ow = (int)(i % OW);
        const int oh = (int)((i / OW) % OH);
        const I nc = i / ((I)OW * OH);
        const T* xp = x + nc * H * W;
        T acc = (T)0;
        for (int kh = 0; kh < KH; ++kh) {
            const int h = oh * SH + kh - PH;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int w = ow * SW + kw - PW;
                if (w < 0 || w >= W) continue;
                acc += xp[(I)h * W + w];
            }
        }
        y[i] = acc * scale;
    }
}

template <typename T, typename I>
__device__ void avg_pool_bwd_impl(const T* __restrict__ dy, T* __restrict__ dx, long long total,
                                  int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                  int PH, int PW, int OH, int OW)
{
    (void)N; (void)C;
    const T scale = (T)(1.0 / ((double)KH * KW));
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const I nc = i / ((I)W * H);
        const T* g = dy + nc * OH * OW;
        const int hp = h + PH;
        const int wp = w + PW;
        const int oh_lo = hp < KH ? 0 : (hp - KH) / SH + 1;
        const int oh_hi = hp / SH < OH - 1 ? hp / SH : OH - 1;
        const int ow_lo = wp < KW ? 0 : (wp - KW) / SW + 1;
        const int ow_hi = wp / SW < OW - 1 ? wp / SW : OW - 1;
        T acc = (T)0;
        for (int oh = oh_hi; oh >= oh_lo; --oh) {
            for (int ow = ow_hi; ow >= ow_lo; --ow) {
                acc += pool_mul_rn(g[(I)oh * OW + ow], scale);
            }
        }
        dx[i] = acc;
    }
}

template <typename T, typename I>
__device__ void max_pool_fwd_impl(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
                                  long long total, int N, int C, int H, int W, int KH, int KW,
                                  int SH, int SW, int PH, int PW, int OH, int OW)
{
    (void)N; (void)C;
    const T ninf = pool_neg_inf((T)0);
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const int ow = (int)(i % OW);
        const int oh = (int)((i / OW) % OH);
        const I nc = i / ((I)OW * OH);
        const T* xp = x + nc * H * W;
        // Start from offset 0 (which may be padding = -inf), then replace only on a strictly
        // greater value or on the first NaN: the first maximum wins, a NaN beats any number
        // (NumPy's rule), exactly like the CPU paths.
        T best = ninf;
        int arg = 0;
        for (int kh = 0; kh < KH; ++kh) {
            const int h = oh * SH + kh - PH;
            for (int kw = 0; kw < KW; ++kw) {
                const int w = ow * SW + kw - PW;
                const T v = (h >= 0 && h < H && w >= 0 && w < W) ? xp[(I)h * W + w] : ninf;
                if ((kh == 0 && kw == 0) || v > best || (v != v && best == best)) {
                    best = v;
                    arg = kh * KW + kw;
                }
            }
        }
        y[i] = best;
        argmax[i] = arg;
    }
}

template <typename T, typename I>
__device__ void max_pool_bwd_impl(const T* __restrict__ dy, const int* __restrict__ argmax, T* __restrict__ dx,
                                  long long total, int N, int C, int H, int W, int KH, int KW,
                                  int SH, int SW, int PH, int PW, int OH, int OW)
{
    (void)N; (void)C;
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const I nc = i / ((I)W * H);
        const T* g = dy + nc * OH * OW;
        const int* a = argmax + nc * OH * OW;
        const int hp = h + PH;
        const int wp = w + PW;
        const int oh_lo = hp < KH ? 0 : (hp - KH) / SH + 1;
        const int oh_hi = hp / SH < OH - 1 ? hp / SH : OH - 1;
        const int ow_lo = wp < KW ? 0 : (wp - KW) / SW + 1;
        const int ow_hi = wp / SW < OW - 1 ? wp / SW : OW - 1;
        T acc = (T)0;
        for (int oh = oh_hi; oh >= oh_lo; --oh) {
            const int kh = hp - oh * SH;
            for (int ow = ow_hi; ow >= ow_lo; --ow) {
                const int kw = wp - ow * SW;
                const I o = (I)oh * OW + ow;
                if (a[o] == kh * KW + kw) acc += g[o];  // only where this element won the window
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void avg_pool_fwd_f32(const float* __restrict__ x, float* __restrict__ y, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_fwd_impl<float, long long>(x, y, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_fwd_i32_f32(const float* __restrict__ x, float* __restrict__ y, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_fwd_impl<float, int>(x, y, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_fwd_f64(const double* __restrict__ x, double* __restrict__ y, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_fwd_impl<double, long long>(x, y, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_fwd_i32_f64(const double* __restrict__ x, double* __restrict__ y, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_fwd_impl<double, int>(x, y, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_bwd_f32(const float* __restrict__ dy, float* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_bwd_impl<float, long long>(dy, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_bwd_i32_f32(const float* __restrict__ dy, float* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_bwd_impl<float, int>(dy, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_bwd_f64(const double* __restrict__ dy, double* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_bwd_impl<double, long long>(dy, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool_bwd_i32_f64(const double* __restrict__ dy, double* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    avg_pool_bwd_impl<double, int>(dy, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_fwd_f32(const float* __restrict__ x, float* __restrict__ y,
                                            int* __restrict__ argmax, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_fwd_impl<float, long long>(x, y, argmax, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_fwd_i32_f32(const float* __restrict__ x, float* __restrict__ y,
                                            int* __restrict__ argmax, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_fwd_impl<float, int>(x, y, argmax, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_fwd_f64(const double* __restrict__ x, double* __restrict__ y,
                                            int* __restrict__ argmax, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_fwd_impl<double, long long>(x, y, argmax, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_fwd_i32_f64(const double* __restrict__ x, double* __restrict__ y,
                                            int* __restrict__ argmax, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_fwd_impl<double, int>(x, y, argmax, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_bwd_f32(const float* __restrict__ dy, const int* __restrict__ argmax,
                                            float* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_bwd_impl<float, long long>(dy, argmax, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_bwd_i32_f32(const float* __restrict__ dy, const int* __restrict__ argmax,
                                            float* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_bwd_impl<float, int>(dy, argmax, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_bwd_f64(const double* __restrict__ dy, const int* __restrict__ argmax,
                                            double* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_bwd_impl<double, long long>(dy, argmax, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool_bwd_i32_f64(const double* __restrict__ dy, const int* __restrict__ argmax,
                                            double* __restrict__ dx, long long total,
                                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                            int PH, int PW, int OH, int OW)
{
    max_pool_bwd_impl<double, int>(dy, argmax, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// im2col / col2im: unfold NCHW images into the column matrix of a convolution, and fold back;
// conv_output: the convolution GEMM's (O, N*OH*OW) result plus bias, laid out as NCHW.
//
// Column layout (matches xcnn/functional.py): col has shape (C*KH*KW, N*OH*OW);
// row (c*KH + kh)*KW + kw, column (n*OH + oh)*OW + ow holds
// x[n, c, oh*SH + kh - PH, ow*SW + kw - PW] (zero outside the image).
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no shared memory, no __syncthreads,
// so the same file also compiles as C++ for the host emulation in tests/.
// Element counts and flat indices are 64-bit; every kernel also has an `_i32` twin (e.g.
// im2col_i32_f32) doing its index arithmetic in 32-bit int -- 64-bit division is a long software
// sequence on a GPU -- which the host picks only when every index of the launch, plus one grid's
// stride, stays below 2^31. Loops are grid-stride, so any grid size is correct.
// Scalar arguments: `total` is long long (int64 on the host), every size/geometry value is int (int32).

template <typename T, typename I>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ col, long long total,
                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                            int PH, int PW, int OH, int OW)
{
    // One thread per column entry, in memory order of col (coalesced writes).
    const I ncols = (I)N * OH * OW;
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const I row = i / ncols;
        const I j = i - row * ncols;
        const int kw = (int)(row % KW);
        const int kh = (int)((row / KW) % KH);
        const I c = row / ((I)KW * KH);
        const int ow = (int)(j % OW);
        const int oh = (int)((j / OW) % OH);
        const I n = j / ((I)OW * OH);
        const int h = oh * SH + kh - PH;
        const int w = ow * SW + kw - PW;
        T v = (T)0;
        if (h >= 0 && h < H && w >= 0 && w < W) {
            v = x[((n * C + c) * H + h) * W + w];
        }
        col[i] = v;
    }
}

template <typename T, typename I>
__device__ void col2im_impl(const T* __restrict__ col, T* __restrict__ dx, long long total,
                            int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                            int PH, int PW, int OH, int OW)
{
    // A gather: one thread per image element sums every column entry that reads it.
    // Deterministic and free of atomics. Windows are visited with kh, then kw, ascending
    // (oh, ow descending), the order the NumPy path adds them in, so results match bit for bit.
    const I ncols = (I)N * OH * OW;
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const int w = (int)(i % W);
        const int h = (int)((i / W) % H);
        const I c = (i / ((I)W * H)) % C;
        const I n = i / ((I)W * H * C);
        const int hp = h + PH;  // position in the padded image
        const int wp = w + PW;
        // Output rows oh whose window [oh*SH, oh*SH + KH) contains hp.
        const int oh_lo = hp < KH ? 0 : (hp - KH) / SH + 1;
        const int oh_hi = hp / SH < OH - 1 ? hp / SH : OH - 1;
        const int ow_lo = wp < KW ? 0 : (wp - KW) / SW + 1;
        const int ow_hi = wp / SW < OW - 1 ? wp / SW : OW - 1;
        T acc = (T)0;
        for (int oh = oh_hi; oh >= oh_lo; --oh) {
            const int kh = hp - oh * SH;
            for (int ow = ow_hi; ow >= ow_lo; --ow) {
                const int kw = wp - ow * SW;
                const I row = (c * KH + kh) * KW + kw;
                acc += col[row * ncols + (n * OH + oh) * OW + ow];
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void im2col_f32(const float* __restrict__ x, float* __restrict__ col, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    im2col_impl<float, long long>(x, col, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void im2col_i32_f32(const float* __restrict__ x, float* __restrict__ col, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    im2col_impl<float, int>(x, col, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void im2col_f64(const double* __restrict__ x, double* __restrict__ col, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    im2col_impl<double, long long>(x, col, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void im2col_i32_f64(const double* __restrict__ x, double* __restrict__ col, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    im2col_impl<double, int>(x, col, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void col2im_f32(const float* __restrict__ col, float* __restrict__ dx, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    col2im_impl<float, long long>(col, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void col2im_i32_f32(const float* __restrict__ col, float* __restrict__ dx, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    col2im_impl<float, int>(col, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void col2im_f64(const double* __restrict__ col, double* __restrict__ dx, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    col2im_impl<double, long long>(col, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void col2im_i32_f64(const double* __restrict__ col, double* __restrict__ dx, long long total,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int OH, int OW)
{
    col2im_impl<double, int>(col, dx, total, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// y (N, O, P) = y2 (O, N*P) + bias (O,), one thread per element of y (coalesced writes): the bias
// add and the CNHW -> NCHW transpose of a convolution's output in one pass, with the rounding of
// adding the bias to y2 first.
template <typename T, typename I>
__device__ void conv_output_impl(const T* __restrict__ y2, const T* __restrict__ bias, T* __restrict__ y,
                                 long long total, int N, int O, int P)
{
    const I step = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)total; i += step) {
        const I p = i % P;
        const I o = (i / P) % O;
        const I n = i / ((I)P * O);
        y[i] = y2[o * ((I)N * P) + n * P + p] + bias[o];
    }
}

extern "C" __global__ void conv_output_f32(const float* __restrict__ y2, const float* __restrict__ bias,
                                           float* __restrict__ y, long long total, int N, int O, int P)
{
    conv_output_impl<float, long long>(y2, bias, y, total, N, O, P);
}

extern "C" __global__ void conv_output_i32_f32(const float* __restrict__ y2, const float* __restrict__ bias,
                                           float* __restrict__ y, long long total, int N, int O, int P)
{
    conv_output_impl<float, int>(y2, bias, y, total, N, O, P);
}

extern "C" __global__ void conv_output_f64(const double* __restrict__ y2, const double* __restrict__ bias,
                                           double* __restrict__ y, long long total, int N, int O, int P)
{
    conv_output_impl<double, long long>(y2, bias, y, total, N, O, P);
}

extern "C" __global__ void conv_output_i32_f64(const double* __restrict__ y2, const double* __restrict__ bias,
                                           double* __restrict__ y, long long total, int N, int O, int P)
{
    conv_output_impl<double, int>(y2, bias, y, total, N, O, P);
}

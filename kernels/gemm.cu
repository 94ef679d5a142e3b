// Deterministic matrix products (GEMM) for the Linear layer and the im2col convolution, so a
// captured CUDA graph needs no cuBLAS (which CuPy refuses to call while a stream is capturing).
//
//     C[i, j] = sum_k A(i, k) * B(k, j)   (+ bias[j] when has_bias != 0),   0 <= i < M, 0 <= j < N
//     A(i, k) = A[i*sa0 + k*sa1],   B(k, j) = B[k*sb0 + j*sb1],   C[i, j] = C[i*ldc + j]
//
// Strides are in elements, so NN, NT and TN products of C-contiguous arrays are stride choices:
//     Linear forward  y (N,O) = x (N,I) @ W (O,I)^T + b : A=x  sa0=I sa1=1,  B=W  sb0=1 sb1=I, bias b
//     Linear dX      dx (N,I) = dy (N,O) @ W (O,I)     : A=dy sa0=O sa1=1,  B=W  sb0=I sb1=1
//     Linear dW      dW (O,I) = dy^T @ x               : A=dy sa0=1 sa1=O,  B=x  sb0=I sb1=1
//     conv forward   y2 (O,NP) = W2 (O,R) @ col (R,NP) : A=W2 sa0=R sa1=1,  B=col sb0=NP sb1=1
//     conv dcol    dcol (R,NP) = W2^T @ dy2 (O,NP)     : A=W2 sa0=1 sa1=R,  B=dy2 sb0=NP sb1=1
//     conv dW       dW2 (O,R) = dy2 (O,NP) @ col^T     : A=dy2 sa0=NP sa1=1, B=col sb0=1 sb1=NP
//
// Kernels (each as _f32 and _f64; T is float or double):
//   gemm_<t>(const T* A, const T* B, const T* bias, T* C, int M, int N, int K,
//            long long sa0, long long sa1, long long sb0, long long sb1, long long ldc, int has_bias)
//       the single pass. Block: exactly 256 threads (any other block size traps). Work: 64x64 output
//       tiles, tile t = (t / ceil(N/64), t % ceil(N/64)), ceil(M/64)*ceil(N/64) of them, visited
//       grid-stride by blockIdx.x, so any grid >= 1 is correct; grid = min(tiles, 262140).
//       Thread (ty, tx) = (threadIdx.x / 16, threadIdx.x % 16) owns the 4x4 outputs
//       (i0 + ty + 16r, j0 + tx + 16c). K is walked in steps of 16 through shared memory
//       (A tile 16x65 and B tile 16x65 of T: 8,320 bytes for float, 16,640 for double), each
//       step's elements fetched into registers while the step before is multiplied out.
//   gemm_splitk_partial_<t>(const T* A, const T* B, T* part, int M, int N, int K,
//            long long sa0, long long sa1, long long sb0, long long sb1, int L, int S)
//       pass 1 of split-K: part[s, i, j] (part is C-contiguous (S, M, N)) = the sum over chunk s,
//       k in [s*L, min(K, (s+1)*L)). Block: exactly 256 threads. Work items: S * ceil(M/16) *
//       ceil(N/16), item w = (chunk s = w / tiles, 16x16 output tile w % tiles), visited grid-stride;
//       grid = min(items, 262140). Thread (ty, tx) owns output (i0 + ty, j0 + tx); the chunk is walked
//       in steps of 64 through shared memory (16x65 A and 64x17 B of T: 8,512 / 17,024 bytes),
//       fetched one step ahead like the single pass.
//   gemm_splitk_reduce_<t>(const T* part, const T* bias, T* C, int M, int N, int S, long long ldc,
//            int has_bias)
//       pass 2: C[i, j] = the S partials summed in ascending s (+ bias[j]). One thread per output,
//       grid-stride, any block size (256 recommended); grid = min(ceil(M*N / 256), 262140).
//
// Summation order (the whole point: bits depend on (M, N, K) and the inputs only, never on the
// launch shape, the GPU model or the compiler's contraction choices). Every multiply-add is an
// explicit fused multiply-add (fmaf / fma), one rounding per step, as in the host emulation's
// correctly rounded libm fma:
//   single pass:  acc = +0;  for k = 0 .. K-1 ascending: acc = fma(A(i,k), B(k,j), acc);
//                 C[i,j] = has_bias ? acc + bias[j] : acc
//   split-K:      p_s = +0;  for k = s*L .. min(K,(s+1)*L)-1 ascending: p_s = fma(A(i,k), B(k,j), p_s);
//                 acc = p_0;  for s = 1 .. S-1 ascending: acc = acc + p_s;
//                 C[i,j] = has_bias ? acc + bias[j] : acc
// With S == 1 the split-K result equals the single pass bit for bit; with S > 1 it is a different
// (but equally fixed) rounding, so the choice between them is part of the rule below. The bits match
// the host emulation's when compiled as xcnn does (no -ftz=true / --use_fast_math, which would flush
// subnormal inputs and results of fmaf to zero).
//
// The plan: which path and (S, L), a pure function of (M, N, K) that the launcher computes:
//   tiles = ceil(M/64) * ceil(N/64)
//   if tiles >= 32 or K < 512:            single pass (gemm_<t>)
//   else:
//     smax = min(256, max(1, 2^22 / (M*N)))         (integer division; caps part at 2^22 elements)
//     L = max(256, ceil(K / smax)), rounded up to a multiple of 64
//     S = ceil(K / L)                                (every chunk non-empty)
//     if S == 1: single pass, else the two passes with part of S*M*N elements
// e.g. the report's conv1 dW at batch 1024 (M=4, N=25, K=802,816): L=3,136, S=256, pass 1 has
// 256 * 2 = 512 blocks reading A's rows and B's columns along k (coalesced); pass 2 sums 256
// partials for each of the 100 outputs.
//
// Argument rules: M, N, K, L, S are int (np.int32 on the host), each in [0, 2^31); strides and ldc
// are long long (np.int64), >= 0; every element addressed, (M-1)*sa0 + (K-1)*sa1 of A and
// (K-1)*sb0 + (N-1)*sb1 of B, (M-1)*ldc + N-1 of C, S*M*N - 1 of part, must exist. C and part must
// not overlap A, B or bias. has_bias is 0 or 1; bias is then read as (N,) or not at all (pass any
// 1-element array). No launch is needed when M*N == 0 (a zero-block grid is invalid). Loads are
// coalesced for unit strides along k or along i (A) / j (B), whichever the strides offer; the
// mapping of threads to loads never changes which products are summed or in what order.
//
// Plain CUDA C for NVRTC and nvcc alike: no #include, no atomics. Unlike the other kernel files this
// one uses __shared__ memory and __syncthreads(); tests/doubles/emu.py runs such files with a block's
// threads as fibers (or OS threads) held at a real barrier, blocks one after another, under the
// address, undefined-behaviour and thread sanitizers too.
// 64-bit element offsets throughout; the barriers are reached by every thread of a block (the loops
// around them depend only on blockIdx.x and the arguments).

#define GEMM_THREADS 256
// single pass: 64x64 output tile, 4x4 outputs per thread, k in steps of 16
#define GEMM_TILE 64
#define GEMM_BK 16
// split-K pass 1: 16x16 output tile, one output per thread, k in steps of 64
#define GEMM_SK_TILE 16
#define GEMM_SK_BK 64
// split-K pass 2: partials loaded ahead of the (sequential) additions, this many at a time
#define GEMM_SK_BATCH 16

__device__ inline float gemm_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double gemm_fma(double a, double b, double c) { return fma(a, b, c); }

// The thread's q-th element of a k-step's ROWS x BK tile (rows of A, or columns of B): with k_fast,
// neighbouring threads take neighbouring k (unit stride along k), else neighbouring rows/columns.
template <int ROWS, int BK>
__device__ inline void gemm_tile_pos(int e, bool k_fast, int& row, int& k)
{
    k = k_fast ? e % BK : e / ROWS;
    row = k_fast ? e / BK : e % ROWS;
}

template <typename T>
__device__ void gemm_impl(const T* __restrict__ A, const T* __restrict__ B, const T* __restrict__ bias,
                          T* __restrict__ C, int M, int N, int K, long long sa0, long long sa1,
                          long long sb0, long long sb1, long long ldc, int has_bias)
{
    // [k][i] and [k][j]; the +1 keeps the k-major stores of a k-fast load free of bank conflicts.
    __shared__ T As[GEMM_BK][GEMM_TILE + 1];
    __shared__ T Bs[GEMM_BK][GEMM_TILE + 1];
    constexpr int Q = GEMM_TILE * GEMM_BK / GEMM_THREADS;  // elements of A and of B per thread and k-step
    if (blockDim.x != GEMM_THREADS) __trap();
    const int t = threadIdx.x;
    const int tx = t % 16, ty = t / 16;
    const long long tiles_n = ((long long)N + GEMM_TILE - 1) / GEMM_TILE;
    const long long tiles = ((long long)M + GEMM_TILE - 1) / GEMM_TILE * tiles_n;
    // Which way neighbouring threads walk while loading: along k when that stride is 1, else
    // along i (A) / j (B).
    const bool a_k_fast = sa1 == 1;
    const bool b_k_fast = sb0 == 1 && sb1 != 1;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long i0 = tile / tiles_n * GEMM_TILE;
        const long long j0 = tile % tiles_n * GEMM_TILE;
        // The k-step's elements are fetched into registers one step ahead, so the global loads of
        // step k0 + 16 are in flight while step k0 is multiplied out of shared memory.
        T ra[Q], rb[Q];
        auto fetch = [&](long long k0) {
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                int r, k;
                gemm_tile_pos<GEMM_TILE, GEMM_BK>(t + q * GEMM_THREADS, a_k_fast, r, k);
                ra[q] = (i0 + r < M && k0 + k < K) ? A[(i0 + r) * sa0 + (k0 + k) * sa1] : (T)0;
                gemm_tile_pos<GEMM_TILE, GEMM_BK>(t + q * GEMM_THREADS, b_k_fast, r, k);
                rb[q] = (j0 + r < N && k0 + k < K) ? B[(k0 + k) * sb0 + (j0 + r) * sb1] : (T)0;
            }
        };
        T acc[4][4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[r][c] = (T)0;
        }
        fetch(0);
        for (long long k0 = 0; k0 < K; k0 += GEMM_BK) {
            const int kn = K - k0 < GEMM_BK ? (int)(K - k0) : GEMM_BK;
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                int r, k;
                gemm_tile_pos<GEMM_TILE, GEMM_BK>(t + q * GEMM_THREADS, a_k_fast, r, k);
                As[k][r] = ra[q];
                gemm_tile_pos<GEMM_TILE, GEMM_BK>(t + q * GEMM_THREADS, b_k_fast, r, k);
                Bs[k][r] = rb[q];
            }
            __syncthreads();
            if (k0 + GEMM_BK < K) fetch(k0 + GEMM_BK);
            // Only the kn real steps: a padded fma(0, 0, acc) would turn an acc of -0 into +0.
            if (kn == GEMM_BK) {
#pragma unroll
                for (int kk = 0; kk < GEMM_BK; ++kk) {
                    T a[4], b[4];
#pragma unroll
                    for (int r = 0; r < 4; ++r) a[r] = As[kk][ty + 16 * r];
#pragma unroll
                    for (int c = 0; c < 4; ++c) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
#pragma unroll
                        for (int c = 0; c < 4; ++c) acc[r][c] = gemm_fma(a[r], b[c], acc[r][c]);
                    }
                }
            } else {
                for (int kk = 0; kk < kn; ++kk) {
                    T a[4], b[4];
#pragma unroll
                    for (int r = 0; r < 4; ++r) a[r] = As[kk][ty + 16 * r];
#pragma unroll
                    for (int c = 0; c < 4; ++c) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
#pragma unroll
                        for (int c = 0; c < 4; ++c) acc[r][c] = gemm_fma(a[r], b[c], acc[r][c]);
                    }
                }
            }
            __syncthreads();  // the next step's stores overwrite As and Bs
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const long long i = i0 + ty + 16 * r;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const long long j = j0 + tx + 16 * c;
                if (i < M && j < N) C[i * ldc + j] = has_bias ? acc[r][c] + bias[j] : acc[r][c];
            }
        }
    }
}

template <typename T>
__device__ void gemm_splitk_partial_impl(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ part,
                                         int M, int N, int K, long long sa0, long long sa1,
                                         long long sb0, long long sb1, int L, int S)
{
    __shared__ T As[GEMM_SK_TILE][GEMM_SK_BK + 1];  // [i][k]
    __shared__ T Bs[GEMM_SK_BK][GEMM_SK_TILE + 1];  // [k][j]
    constexpr int Q = GEMM_SK_TILE * GEMM_SK_BK / GEMM_THREADS;
    if (blockDim.x != GEMM_THREADS) __trap();
    const int t = threadIdx.x;
    const int tx = t % GEMM_SK_TILE, ty = t / GEMM_SK_TILE;
    const long long tiles_n = ((long long)N + GEMM_SK_TILE - 1) / GEMM_SK_TILE;
    const long long tiles = ((long long)M + GEMM_SK_TILE - 1) / GEMM_SK_TILE * tiles_n;
    const long long items = tiles * S;
    const bool a_k_fast = sa1 == 1;
    const bool b_k_fast = sb0 == 1 && sb1 != 1;
    for (long long w = blockIdx.x; w < items; w += gridDim.x) {
        const long long s = w / tiles;
        const long long tile = w % tiles;
        const long long i0 = tile / tiles_n * GEMM_SK_TILE;
        const long long j0 = tile % tiles_n * GEMM_SK_TILE;
        const long long kb = s * L < K ? s * L : K;
        const long long ke = kb + L < K ? kb + L : K;
        T ra[Q], rb[Q];  // fetched one k-step ahead, as in gemm_impl
        auto fetch = [&](long long k0) {
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                int r, k;
                gemm_tile_pos<GEMM_SK_TILE, GEMM_SK_BK>(t + q * GEMM_THREADS, a_k_fast, r, k);
                ra[q] = (i0 + r < M && k0 + k < ke) ? A[(i0 + r) * sa0 + (k0 + k) * sa1] : (T)0;
                gemm_tile_pos<GEMM_SK_TILE, GEMM_SK_BK>(t + q * GEMM_THREADS, b_k_fast, r, k);
                rb[q] = (j0 + r < N && k0 + k < ke) ? B[(k0 + k) * sb0 + (j0 + r) * sb1] : (T)0;
            }
        };
        T acc = (T)0;
        fetch(kb);
        for (long long k0 = kb; k0 < ke; k0 += GEMM_SK_BK) {
            const int kn = ke - k0 < GEMM_SK_BK ? (int)(ke - k0) : GEMM_SK_BK;
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                int r, k;
                gemm_tile_pos<GEMM_SK_TILE, GEMM_SK_BK>(t + q * GEMM_THREADS, a_k_fast, r, k);
                As[r][k] = ra[q];
                gemm_tile_pos<GEMM_SK_TILE, GEMM_SK_BK>(t + q * GEMM_THREADS, b_k_fast, r, k);
                Bs[k][r] = rb[q];
            }
            __syncthreads();
            if (k0 + GEMM_SK_BK < ke) fetch(k0 + GEMM_SK_BK);
            if (kn == GEMM_SK_BK) {
#pragma unroll 16
                for (int kk = 0; kk < GEMM_SK_BK; ++kk) acc = gemm_fma(As[ty][kk], Bs[kk][tx], acc);
            } else {
                for (int kk = 0; kk < kn; ++kk) acc = gemm_fma(As[ty][kk], Bs[kk][tx], acc);
            }
            __syncthreads();  // the next step's stores overwrite As and Bs
        }
        const long long i = i0 + ty, j = j0 + tx;
        if (i < M && j < N) part[(s * M + i) * N + j] = acc;
    }
}

template <typename T>
__device__ void gemm_splitk_reduce_impl(const T* __restrict__ part, const T* __restrict__ bias, T* __restrict__ C,
                                        int M, int N, int S, long long ldc, int has_bias)
{
    const long long mn = (long long)M * N;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < mn; e += step) {
        const long long i = e / N, j = e - i * N;
        T acc = S > 0 ? part[e] : (T)0;
        int s = 1;
        // Loads issued ahead in batches; the additions stay strictly in ascending s.
        for (; s + GEMM_SK_BATCH <= S; s += GEMM_SK_BATCH) {
            T v[GEMM_SK_BATCH];
#pragma unroll
            for (int u = 0; u < GEMM_SK_BATCH; ++u) v[u] = part[(s + u) * mn + e];
#pragma unroll
            for (int u = 0; u < GEMM_SK_BATCH; ++u) acc = acc + v[u];
        }
        for (; s < S; ++s) acc = acc + part[s * mn + e];
        C[i * ldc + j] = has_bias ? acc + bias[j] : acc;
    }
}

extern "C" __global__ void gemm_f32(const float* __restrict__ A, const float* __restrict__ B,
                                    const float* __restrict__ bias, float* __restrict__ C, int M, int N, int K,
                                    long long sa0, long long sa1, long long sb0, long long sb1, long long ldc,
                                    int has_bias)
{
    gemm_impl<float>(A, B, bias, C, M, N, K, sa0, sa1, sb0, sb1, ldc, has_bias);
}

extern "C" __global__ void gemm_f64(const double* __restrict__ A, const double* __restrict__ B,
                                    const double* __restrict__ bias, double* __restrict__ C, int M, int N, int K,
                                    long long sa0, long long sa1, long long sb0, long long sb1, long long ldc,
                                    int has_bias)
{
    gemm_impl<double>(A, B, bias, C, M, N, K, sa0, sa1, sb0, sb1, ldc, has_bias);
}

extern "C" __global__ void gemm_splitk_partial_f32(const float* __restrict__ A, const float* __restrict__ B,
                                                   float* __restrict__ part, int M, int N, int K,
                                                   long long sa0, long long sa1, long long sb0, long long sb1,
                                                   int L, int S)
{
    gemm_splitk_partial_impl<float>(A, B, part, M, N, K, sa0, sa1, sb0, sb1, L, S);
}

extern "C" __global__ void gemm_splitk_partial_f64(const double* __restrict__ A, const double* __restrict__ B,
                                                   double* __restrict__ part, int M, int N, int K,
                                                   long long sa0, long long sa1, long long sb0, long long sb1,
                                                   int L, int S)
{
    gemm_splitk_partial_impl<double>(A, B, part, M, N, K, sa0, sa1, sb0, sb1, L, S);
}

extern "C" __global__ void gemm_splitk_reduce_f32(const float* __restrict__ part, const float* __restrict__ bias,
                                                  float* __restrict__ C, int M, int N, int S, long long ldc,
                                                  int has_bias)
{
    gemm_splitk_reduce_impl<float>(part, bias, C, M, N, S, ldc, has_bias);
}

extern "C" __global__ void gemm_splitk_reduce_f64(const double* __restrict__ part, const double* __restrict__ bias,
                                                  double* __restrict__ C, int M, int N, int S, long long ldc,
                                                  int has_bias)
{
    gemm_splitk_reduce_impl<double>(part, bias, C, M, N, S, ldc, has_bias);
}

// kernels/gemm.cu on concurrent OS threads (one per CUDA thread, emu_cuda.h mode 2), built whole with
// -fsanitize=thread by tests/test_gemm_kernels.py (ThreadSanitizer cannot be preloaded into Python):
//   g++ -fsanitize=thread -pthread -DGEMM_SOURCE='"path/to/gemm.cu"' -Itests/doubles tests/doubles/emu_tsan_gemm.cpp
// Runs every kernel on shapes with several k-steps, tiles and chunks per block (so shared memory is
// refilled and reused), checks the bits against the naive fma loop, and prints
// "tsan gemm: <n> checks, <f> failures". Any data race is ThreadSanitizer's to report.
#define EMU_BLOCK_THREADS 2
#include "emu_cuda.h"
#include GEMM_SOURCE

#include <cstdint>
#include <vector>

static int checks = 0, failures = 0;

static float ref_fma(float a, float b, float c) { return fmaf(a, b, c); }
static double ref_fma(double a, double b, double c) { return fma(a, b, c); }

static void launch(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
                   long long s[4], unsigned grid, int has_bias)
{
    emu_launch_block_threads(grid, 256, [=] { gemm_f32(A, B, bias, C, M, N, K, s[0], s[1], s[2], s[3], N, has_bias); });
}
static void launch(double* C, const double* A, const double* B, const double* bias, int M, int N,
                   int K, long long s[4], unsigned grid, int has_bias)
{
    emu_launch_block_threads(grid, 256, [=] { gemm_f64(A, B, bias, C, M, N, K, s[0], s[1], s[2], s[3], N, has_bias); });
}
static void partial(float* P, const float* A, const float* B, int M, int N, int K, long long s[4], int L, int S,
                    unsigned grid)
{
    emu_launch_block_threads(grid, 256, [=] { gemm_splitk_partial_f32(A, B, P, M, N, K, s[0], s[1], s[2], s[3], L, S); });
}
static void partial(double* P, const double* A, const double* B, int M, int N, int K, long long s[4], int L, int S,
                    unsigned grid)
{
    emu_launch_block_threads(grid, 256, [=] { gemm_splitk_partial_f64(A, B, P, M, N, K, s[0], s[1], s[2], s[3], L, S); });
}
static void reduce(float* C, const float* P, const float* bias, int M, int N, int S, unsigned grid, int has_bias)
{
    emu_launch_block_threads(grid, 64, [=] { gemm_splitk_reduce_f32(P, bias, C, M, N, S, N, has_bias); });
}
static void reduce(double* C, const double* P, const double* bias, int M, int N, int S, unsigned grid, int has_bias)
{
    emu_launch_block_threads(grid, 64, [=] { gemm_splitk_reduce_f64(P, bias, C, M, N, S, N, has_bias); });
}

template <typename T>
static T naive(const std::vector<T>& A, const std::vector<T>& B, long long s[4], int i, int j, long long kb, long long ke)
{
    T acc = (T)0;
    for (long long k = kb; k < ke; ++k) acc = ref_fma(A[i * s[0] + k * s[1]], B[k * s[2] + j * s[3]], acc);
    return acc;
}

template <typename T>
static void fill(std::vector<T>& v, uint64_t seed)
{
    for (T& x : v) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x = (T)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
}

static bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
static bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// A (M, K) row-major (transA: stored (K, M)), B (K, N) row-major (transB: stored (N, K)).
template <typename T>
static void check(int M, int N, int K, bool transA, bool transB, int L, unsigned grid)
{
    long long s[4] = {transA ? 1 : K, transA ? M : 1, transB ? 1 : N, transB ? K : 1};
    std::vector<T> A((size_t)M * K), B((size_t)K * N), bias(N), C((size_t)M * N);
    fill(A, 1 + M);
    fill(B, 2 + N);
    fill(bias, 3 + K);
    const int S = L > 0 ? (K + L - 1) / L : 1;
    if (L <= 0) {
        launch(C.data(), A.data(), B.data(), bias.data(), M, N, K, s, grid, 1);
    } else {
        std::vector<T> P((size_t)S * M * N);
        partial(P.data(), A.data(), B.data(), M, N, K, s, L, S, grid);
        reduce(C.data(), P.data(), bias.data(), M, N, S, grid, 1);
    }
    ++checks;
    for (int i = 0; i < M; ++i) {
        for (int j = 0; j < N; ++j) {
            T want;
            if (L <= 0) {
                want = naive(A, B, s, i, j, 0, K);
            } else {
                want = naive(A, B, s, i, j, 0, L < K ? L : K);
                for (int c = 1; c < S; ++c) {
                    const long long kb = (long long)c * L;
                    want = want + naive(A, B, s, i, j, kb, kb + L < K ? kb + L : K);
                }
            }
            want = want + bias[j];
            if (!same_bits(C[(size_t)i * N + j], want)) {
                if (failures < 5)
                    std::printf("mismatch M=%d N=%d K=%d L=%d grid=%u at (%d, %d): %.9g != %.9g\n", M, N, K, L, grid,
                                i, j, (double)C[(size_t)i * N + j], (double)want);
                ++failures;
            }
        }
    }
}

int main()
{
    // single pass: 3 k-steps (one partial), 2 x 1 tiles; one block walks both tiles, or two blocks
    check<float>(70, 33, 40, false, false, 0, 1);
    check<float>(70, 33, 40, true, true, 0, 2);
    check<double>(33, 70, 37, false, true, 0, 1);
    check<double>(33, 70, 37, true, false, 0, 3);
    // split-K: 2..3 chunks of 1..2 k-steps, 2 x 2 tiles: 8..12 work items over fewer blocks
    check<float>(20, 17, 300, false, true, 128, 5);
    check<float>(20, 17, 300, true, false, 100, 1);
    check<double>(17, 20, 200, false, false, 100, 3);
    check<double>(17, 20, 200, true, true, 70, 2);
    // odd corners: K = 0, a single output, more blocks than work
    check<float>(1, 1, 0, false, false, 0, 2);
    check<double>(1, 1, 65, false, false, 0, 1);
    check<float>(5, 3, 129, true, false, 64, 9);
    check<double>(16, 16, 64, false, true, 64, 1);
    std::printf("tsan gemm: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

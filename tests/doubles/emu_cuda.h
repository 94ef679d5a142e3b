// Host emulation of the tiny CUDA subset our kernels use, so kernels/*.cu compile as plain C++:
//   g++ -x c++ -include tests/doubles/emu_cuda.h kernels/pool.cu + a generated launcher (tests/doubles/emu.py).
//
// Three ways to run a launch, chosen by EMU_BLOCK_THREADS (define it before this header):
// * undefined or 0, sequential: every block and every thread one after another on the calling
//   thread. Exact for kernels without shared memory or __syncthreads, which is all but gemm.cu;
//   __shared__ and __syncthreads() do not even compile in this mode.
// * 1, fibers (what tests/doubles/emu.py uses for a source with __shared__ or __syncthreads): the threads
//   of a block are ucontext fibers on the calling thread; __syncthreads() suspends a thread until
//   every thread of its block has reached it. Deterministic (threadIdx order between barriers).
// * 2, OS threads: one std::thread per CUDA thread of a block, all running at once;
//   __syncthreads() is a real barrier (mutex + condition variable, so the thread sanitizer sees
//   its ordering and reports any access pair a missing barrier leaves unordered).
// In modes 1 and 2 blocks run one after another, each thread passing a block-end barrier before
// the next block starts, and __shared__ is `static`: one copy, which is per block because blocks
// never overlap. A block whose threads do not all reach the same barrier (some at __syncthreads(),
// others done with the block) aborts with a message instead of hanging or passing silently.
#pragma once
#include <xmmintrin.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#if EMU_BLOCK_THREADS
#include <mutex>
#include <vector>
#endif
#if EMU_BLOCK_THREADS == 1
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#endif
#if EMU_BLOCK_THREADS == 2
#include <condition_variable>
#include <thread>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

// CuPy compiles every kernel with -ftz=true (appended after the caller's options): single-precision
// operations flush subnormal inputs and results to zero on the GPU. The launcher of each *_f32
// kernel holds one of these, which turns on the x86 DAZ (denormals-are-zero, bit 6) and FTZ
// (flush-to-zero, bit 15) modes of this thread for the launch; double precision is never flushed.
struct emu_ftz {
    unsigned int saved;
    bool on;
    explicit emu_ftz(bool on_) : saved(_mm_getcsr()), on(on_) { if (on) _mm_setcsr(saved | 0x8040u); }
    ~emu_ftz() { if (on) _mm_setcsr(saved); }
};

struct emu_dim3 { unsigned int x, y, z; };
// One translation unit per emulated .cu file, so plain statics are enough.
#if EMU_BLOCK_THREADS == 2
static thread_local emu_dim3 threadIdx, blockIdx;
#else
static emu_dim3 threadIdx, blockIdx;
#endif
static emu_dim3 blockDim, gridDim;

static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }
// volatile keeps the host compiler from contracting these into an FMA, like the _rn intrinsics.
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
// fmaf / fma come from <cmath>: glibc's are correctly rounded, like the GPU's fma.rn.

[[noreturn]] static inline void __trap()
{
    std::fprintf(stderr, "emulation: __trap() in block %u thread %u\n", blockIdx.x, threadIdx.x);
    std::fflush(stderr);
    std::abort();
}

#if EMU_BLOCK_THREADS
#define __shared__ static

// The launch state below is one per module: launches of any of its kernels take turns.
static std::mutex emu_one_launch_at_a_time_;

// A block whose threads stop at different barriers: the GPU's behaviour is undefined; say so and stop.
[[noreturn]] static inline void emu_barrier_mismatch(unsigned int block, unsigned int thread, bool finished)
{
    std::fprintf(stderr, "emulation: __syncthreads() not reached by every thread of block %u (thread %u %s)\n",
                 block, thread, finished ? "finished the block while others wait in __syncthreads()"
                                         : "waits in __syncthreads() while others finished the block");
    std::fflush(stderr);
    std::abort();
}
#endif

#if EMU_BLOCK_THREADS == 1
// Fibers: each CUDA thread of the block is a ucontext with its own stack; a scheduler resumes them in
// threadIdx order, each running until its next __syncthreads() or its end, and starts the next round
// once all have stopped at the same place. About 0.1 ms per barrier for 256 threads (OS threads: ~3 ms).
enum emu_fiber_stop { emu_running, emu_at_barrier, emu_finished };
struct emu_fiber {
    ucontext_t ctx;
    emu_fiber_stop stop;
    char* stack;
    size_t size;
    void* fake_stack;  // AddressSanitizer's, while the fiber is suspended
};
static ucontext_t emu_scheduler_;
static emu_fiber* emu_fibers_ = nullptr;
static void (*emu_body_fn_)(void*) = nullptr;
static void* emu_body_arg_ = nullptr;

// Under AddressSanitizer every switch is announced (its swapcontext interceptor alone only clears
// the new stack's shadow, and it warns once that it cannot follow the switches by itself).
#if defined(__SANITIZE_ADDRESS__)
static inline void emu_switch_out(void** fake, const void* bottom, size_t size) { __sanitizer_start_switch_fiber(fake, bottom, size); }
static inline void emu_switched_in(void* fake, const void** bottom, size_t* size) { __sanitizer_finish_switch_fiber(fake, bottom, size); }
#else
static inline void emu_switch_out(void**, const void*, size_t) {}
static inline void emu_switched_in(void*, const void**, size_t*) {}
#endif
static const void* emu_scheduler_stack_ = nullptr;
static size_t emu_scheduler_stack_size_ = 0;
static void* emu_scheduler_fake_ = nullptr;

static inline void __syncthreads()
{
    emu_fiber& f = emu_fibers_[threadIdx.x];
    f.stop = emu_at_barrier;
    emu_switch_out(&f.fake_stack, emu_scheduler_stack_, emu_scheduler_stack_size_);
    swapcontext(&f.ctx, &emu_scheduler_);
    emu_switched_in(f.fake_stack, &emu_scheduler_stack_, &emu_scheduler_stack_size_);
}

static void emu_fiber_entry()
{
    emu_switched_in(nullptr, &emu_scheduler_stack_, &emu_scheduler_stack_size_);
    emu_body_fn_(emu_body_arg_);
    emu_fibers_[threadIdx.x].stop = emu_finished;
    emu_switch_out(nullptr, emu_scheduler_stack_, emu_scheduler_stack_size_);  // for good: no fake stack to keep
}  // returning resumes uc_link, the scheduler

// getcontext and swapcontext "return twice": kept out of the scheduler's loop (and its locals).
__attribute__((noinline)) static void emu_fiber_start(emu_fiber& f, char* stack, size_t size)
{
    getcontext(&f.ctx);
    f.stack = stack;
    f.size = size;
    f.fake_stack = nullptr;
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = size;
    f.ctx.uc_link = &emu_scheduler_;
    makecontext(&f.ctx, emu_fiber_entry, 0);
}

__attribute__((noinline)) static void emu_fiber_resume(emu_fiber& f)
{
    f.stop = emu_running;
    emu_switch_out(&emu_scheduler_fake_, f.stack, f.size);
    swapcontext(&emu_scheduler_, &f.ctx);
    emu_switched_in(emu_scheduler_fake_, nullptr, nullptr);
}

template <typename Body>
static void emu_launch_block_threads(unsigned int grid, unsigned int block, Body body)
{
    std::lock_guard<std::mutex> guard(emu_one_launch_at_a_time_);
    const size_t stack = 256 * 1024;
    std::vector<emu_fiber> fibers(block);
    char* stacks = (char*)mmap(nullptr, stack * block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stacks == MAP_FAILED) {
        std::perror("emulation: mmap of fiber stacks");
        std::abort();
    }
    emu_fibers_ = fibers.data();
    emu_body_fn_ = [](void* p) { (*static_cast<Body*>(p))(); };
    emu_body_arg_ = &body;
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        for (unsigned int t = 0; t < block; ++t) emu_fiber_start(fibers[t], stacks + stack * t, stack);
        for (;;) {  // one round: every thread up to its next barrier (or its end)
            for (unsigned int t = 0; t < block; ++t) {
                threadIdx = {t, 0, 0};
                emu_fiber_resume(fibers[t]);
            }
            const emu_fiber_stop first = fibers[0].stop;
            for (unsigned int t = 1; t < block; ++t)
                if (fibers[t].stop != first) emu_barrier_mismatch(b, t, fibers[t].stop == emu_finished);
            if (first == emu_finished) break;
        }
    }
    munmap(stacks, stack * block);
    emu_fibers_ = nullptr;
}
#endif

#if EMU_BLOCK_THREADS == 2
// OS threads: one std::thread per CUDA thread, truly concurrent, with a reusable barrier; what the
// thread sanitizer build runs (it understands the mutex and condition variable, not the fibers).
class emu_block_barrier {
public:
    explicit emu_block_barrier(unsigned int n) : n_(n) {}
    // where = 0: __syncthreads(); where = 1: the thread has finished the block.
    void arrive(int where)
    {
        std::unique_lock<std::mutex> lock(m_);
        if (count_ == 0)
            where_ = where;
        else if (where != where_)
            emu_barrier_mismatch(blockIdx.x, threadIdx.x, where == 1);
        const unsigned long long gen = gen_;
        if (++count_ == n_) {
            count_ = 0;
            ++gen_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return gen_ != gen; });
        }
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    unsigned int n_, count_ = 0;
    unsigned long long gen_ = 0;
    int where_ = 0;
};

static emu_block_barrier* emu_barrier_ = nullptr;  // the launch in progress

static inline void __syncthreads() { emu_barrier_->arrive(0); }

template <typename Body>
static void emu_launch_block_threads(unsigned int grid, unsigned int block, Body body)
{
    std::lock_guard<std::mutex> guard(emu_one_launch_at_a_time_);
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    emu_block_barrier barrier(block);
    emu_barrier_ = &barrier;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned int t = 0; t < block; ++t) {
        threads.emplace_back([&barrier, &body, grid, t] {
            threadIdx = {t, 0, 0};
            for (unsigned int b = 0; b < grid; ++b) {
                blockIdx = {b, 0, 0};
                body();
                barrier.arrive(1);  // nobody starts block b+1 (and reuses __shared__) before all finish b
            }
        });
    }
    for (std::thread& th : threads) th.join();
    emu_barrier_ = nullptr;
}
#endif

#include "metalnn/backend/cpu/blas.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "metalnn/core/thread_pool.h"

#if defined(METALNN_USE_ACCELERATE)
#include <Accelerate/Accelerate.h>
#else
#include <dlfcn.h>
#endif

namespace metalnn::cpu {
namespace {

// CBLAS enum values are fixed by the CBLAS standard.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
std::atomic<sgemm_fn> g_sgemm{nullptr};
std::string g_info = "fallback";
std::mutex g_mutex;

// Cache-blocked fallback, good enough for tests on machines without a BLAS.
void fallback_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) std::fill(c, c + N, 0.f);
    else if (beta != 1.f) for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
  constexpr int64_t KB = 256;
  for (int64_t k0 = 0; k0 < K; k0 += KB) {
    int64_t k1 = std::min(K, k0 + KB);
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      for (int64_t k = k0; k < k1; ++k) {
        float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
        if (!tb) {
          const float* b = B + k * ldb;
          for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
        } else {
          for (int64_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k];
        }
      }
    }
  }
}

}  // namespace

bool set_blas_library(const std::string& path) {
#if defined(METALNN_USE_ACCELERATE)
  (void)path;
  return true;
#else
  std::lock_guard<std::mutex> lock(g_mutex);
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) return false;
  auto fn = (sgemm_fn)dlsym(h, "scipy_cblas_sgemm");
  if (!fn) fn = (sgemm_fn)dlsym(h, "cblas_sgemm");
  if (!fn) return false;
  // Our thread pool parallelises around BLAS calls; BLAS itself runs one thread.
  using set_threads_fn = void (*)(int);
  for (const char* name : {"scipy_openblas_set_num_threads", "openblas_set_num_threads"})
    if (auto st = (set_threads_fn)dlsym(h, name)) {
      st(1);
      break;
    }
  g_info = "openblas: " + path;
  g_sgemm.store(fn);
  return true;
#endif
}

std::string blas_info() {
#if defined(METALNN_USE_ACCELERATE)
  return "accelerate";
#else
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_info;
#endif
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty sum: C = beta * C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
#if defined(METALNN_USE_ACCELERATE)
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
              (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
  if (auto fn = g_sgemm.load()) {
    fn(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, (int)M, (int)N, (int)K, alpha, A,
       (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return;
  }
  fallback_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void sgemm_parallel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  double flops = 2.0 * M * N * K;
  int threads = num_threads();
  if (threads == 1 || in_parallel_region() || flops < 4e6) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger of M and N into one panel per thread (cut at multiples of 16 where the
  // size allows): each product packs the shared operand, so more panels would pack it more often.
  const int64_t S = std::max(M, N);
  const int64_t unit = S >= 16 * threads ? 16 : 1;
  const int team = (int)std::min<int64_t>(threads, S / std::max<int64_t>(unit, 8));
  if (team < 2) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_team(team, [&](int rank, int n) {
    const int64_t units = (S + unit - 1) / unit;
    const int64_t p0 = std::min(S, units * rank / n * unit), p1 = std::min(S, units * (rank + 1) / n * unit);
    if (p0 >= p1) return;
    if (M >= N) {
      const float* a = ta ? A + p0 : A + p0 * lda;
      sgemm(ta, tb, p1 - p0, N, K, alpha, a, lda, B, ldb, beta, C + p0 * ldc, ldc);
    } else {
      const float* b = tb ? B + p0 * ldb : B + p0;
      sgemm(ta, tb, M, p1 - p0, K, alpha, A, lda, b, ldb, beta, C + p0, ldc);
    }
  });
}

}  // namespace metalnn::cpu

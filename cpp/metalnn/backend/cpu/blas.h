// Single-precision matrix products for the CPU backend. On Linux the BLAS comes from
// the scipy-openblas32 wheel, dlopen'ed at run time from the path Python passes to
// set_blas_library(); on macOS from Accelerate. Without either, a blocked fallback runs.
#pragma once
#include <cstdint>
#include <string>

namespace metalnn::cpu {

// C (M x N) = alpha * op(A) * op(B) + beta * C, all row-major; op transposes when the flag is set.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Like sgemm, but splits large products over the thread pool (when not already inside it).
void sgemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// Loads an OpenBLAS-compatible library; returns false (and keeps the fallback) on failure.
bool set_blas_library(const std::string& path);
// "openblas: <path>", "accelerate" or "fallback".
std::string blas_info();

}  // namespace metalnn::cpu

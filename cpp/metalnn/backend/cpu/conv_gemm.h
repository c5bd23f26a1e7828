// A small register-blocked GEMM for the convolution's per-image products. Weights are
// packed once per call and shared by every image (BLAS repacks them per call); the
// per-image operand is read in place or packed; the tile shape is picked per product so
// that sizes like 14*14 = 196 waste little work; C may be stored transposed so either
// axis of the product can be the long one.
#pragma once
#include <cstdint>

namespace metalnn::cpu {

// C (M x N) = A (M x K) * B (K x N) with an mr x nr register tile.
struct GemmPlan {
  int64_t M, N, K;
  int mr, nr;
  int64_t a_size() const { return (M + mr - 1) / mr * mr * K; }  // floats in packed A
  int64_t b_size() const { return (N + nr - 1) / nr * nr * K; }  // floats in packed B
};
GemmPlan gemm_plan(int64_t M, int64_t N, int64_t K);
// Relative cost: padded tile work plus the stores (transposed stores cost more).
double gemm_cost(const GemmPlan& plan, bool transpose_c);

// An operand: packed (ld == 0) or read in place with A(m, k) = data[k * ld + m],
// B(k, n) = data[k * ld + n] (edge tiles are copied, so nothing is read out of range).
// row_major (A only, in place): A(m, k) = data[m * ld + k], e.g. a weight matrix too
// large to repack per call.
struct GemmOperand {
  const float* data;
  int64_t ld;
  bool row_major = false;
};

// A(m, k) = trans ? A[k * lda + m] : A[m * lda + k], packed into [tile][k][mr], zero padded.
void gemm_pack_a(const GemmPlan& plan, const float* A, int64_t lda, bool trans, float* out);
// A(m, k) = src[m_off[m] + k_off[k]]: a gather, e.g. image patches read from a padded image.
void gemm_pack_a_gather(const GemmPlan& plan, const float* src, const int64_t* m_off, const int64_t* k_off,
                        float* out);
// B(k, n) = trans ? B[n * ldb + k] : B[k * ldb + n], packed into [panel][k][nr], zero padded.
void gemm_pack_b(const GemmPlan& plan, const float* B, int64_t ldb, bool trans, float* out);

// C = A * B, or C += A * B when accumulate. C(m, n) is C[m * ldc + n], or C[n * ldc + m]
// when transpose_c. Row tiles are split over the thread pool when called outside
// parallel_for and the product is large.
void gemm(const GemmPlan& plan, GemmOperand a, GemmOperand b, float* C, int64_t ldc, bool accumulate,
          bool transpose_c);

}  // namespace metalnn::cpu

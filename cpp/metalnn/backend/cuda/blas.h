// cuBLAS, loaded at run time (dlopen of the nvidia-cublas wheel's libcublas, like the CPU
// backend's OpenBLAS), so the build needs no cuBLAS headers or import library.
#pragma once
#include <cstdint>

namespace metalnn::cuda {

// Column-major batched C_b = op(A_b) op(B_b) (+ beta C_b) on the current stream. A and B
// are float16 when ab_half, C when c_half. Float32 accumulation; tf32 tensor cores for
// float32 operands only when allow_tf32() (METALNN_ALLOW_TF32=1); half_accumulation
// (float16 operands and result) sums in float16.
void gemm(const char* op, bool trans_a, bool trans_b, int m, int n, int k, const void* a, int lda, int64_t stride_a,
          const void* b, int ldb, int64_t stride_b, void* c, int ldc, int64_t stride_c, int batch, bool ab_half,
          bool c_half, float beta = 0.f, bool half_accumulation = false);

}  // namespace metalnn::cuda

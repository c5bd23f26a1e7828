// Matrix-vector products for batch-1 layers: a GEMM routine packs the whole weight matrix
// for a single row of output, which costs more than the product; these stream the weights once.
#pragma once
#include <cstdint>

namespace metalnn::cpu {

// y[o] = sum_f x[f] * W[o * ldw + f] for o in [0, O): one row of x times W^T (W row-major).
void gemv_rows(int64_t O, int64_t F, const float* x, const float* W, int64_t ldw, float* y);

}  // namespace metalnn::cpu

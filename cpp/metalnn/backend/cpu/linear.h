// CPU fully connected kernels: one sgemm over the batch (float32, or float16 widened
// and rounded once); half accumulation runs plain loops in feature order. The forward
// runs f per output panel right after its product.
#pragma once
#include "kernels/linear_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/linear.inc"

// db[o] = sum_{n, i} dy[n, o, i] for dy of shape (N, O, inner); shared with conv.
void bias_backward(const Tensor& dy, const Tensor& db, int64_t N, int64_t O, int64_t inner);

}  // namespace metalnn::cpu

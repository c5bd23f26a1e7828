// Fully connected and 2-D convolution on CUDA: cuBLAS GEMMs (float32 accumulation, no tf32),
// im2col / col2im for convolutions, and the fused bias + neuron epilogue.
#pragma once
#include "kernels/conv_params.h"
#include "kernels/linear_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/linear.inc"
#include "metalnn/backend/kernels/conv.inc"

// The layer epilogue (neuron.cu) reading a float16 accumulator (N, O, P) straight from cuDNN or
// cuBLAS, so float16 layers need no widening pass: z = acc + bias[o], y = neuron(z).
void bias_neuron_epilogue_half_acc(const char* op, const void* acc, const Tensor* bias, const Tensor& y,
                                   const Tensor* z, int64_t N, int64_t O, int64_t P, const MnnNeuronParams& p);

// db[o] = sum over n and the inner positions of dy (N, O, inner).
void bias_backward(const Tensor& dy, const Tensor& db, int64_t n, int64_t o, int64_t inner);

}  // namespace metalnn::cuda

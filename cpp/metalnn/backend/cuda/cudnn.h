// 2-D convolutions through cuDNN, loaded at run time (dlopen of the nvidia-cudnn wheel's
// libcudnn.so.9, like cuBLAS): the build needs no cuDNN headers; the few legacy-API
// functions used are declared in cudnn.cpp. Each call returns false, having done nothing,
// when cuDNN is missing or does not take the parameters (asymmetric padding that changes
// the output size); the caller then runs its own im2col + GEMM path.
// Algorithms: per (direction, shape, dtype, math) the fastest by cudnnFind, measured once
// outside a CUDA-graph capture (the heuristic inside one, re-measured at the next call
// outside); for float32 deterministic ones first unless METALNN_CUDNN_DETERMINISTIC=0.
#pragma once
#include "kernels/conv_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

// y = conv(x, w) (no bias), y with x's dtype. half_accumulation: float16 compute type.
bool cudnn_conv_forward(const char* op, const Tensor& x, const Tensor& w, void* y, const MnnConv2dParams& p);
bool cudnn_conv_backward_data(const char* op, const Tensor& dy, const Tensor& w, const Tensor& dx,
                              const MnnConv2dParams& p);
bool cudnn_conv_backward_filter(const char* op, const Tensor& dy, const Tensor& x, const Tensor& dw,
                                const MnnConv2dParams& p);

// Float32 matrix work may use tf32 tensor cores: METALNN_ALLOW_TF32=1 (read at each call).
bool allow_tf32();

}  // namespace metalnn::cuda

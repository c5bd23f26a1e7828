// Normalization encoders (kernels in cpp/kernels/normalization.metal). Plain C++: ops/ calls
// these inside the Metal branch of dispatch().
// gamma, beta, statistics and their gradients are float32; p views x as (n, c, s).
#pragma once
#include "kernels/normalization_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// Batch norm: mean and biased variance per channel over (n, s).
void batch_norm_statistics(const Tensor& x, const Tensor& mean, const Tensor& var, const MnnNormParams& p);
// r = (1 - momentum) r + momentum * batch, with the unbiased variance var * count / (count - 1).
void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, const MnnNormParams& p);
// y = (x - mean) / sqrt(var + epsilon) * gamma + beta.
void batch_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                        const Tensor& var, const Tensor& y, const MnnNormParams& p);
// dgamma = sum dy xhat, dbeta = sum dy; dx with batch statistics (p.flags) or frozen ones.
void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& var, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p);

// Group norm: mean / inv_std (n, groups) float32 written for the gradient.
void group_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                        const Tensor& mean, const Tensor& inv_std, const MnnNormParams& p);
void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& inv_std, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p);

void cross_channel_norm_forward(const Tensor& x, const Tensor& y, const MnnNormParams& p);
void cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNormParams& p);

}  // namespace metalnn::metal

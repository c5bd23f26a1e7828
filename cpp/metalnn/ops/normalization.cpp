#include "metalnn/ops/normalization.h"

#include <climits>
#include <cmath>

#include "metalnn/backend/cpu/normalization.h"
#include "metalnn/backend/cuda/normalization.h"
#include "metalnn/backend/metal/normalization.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

// x: (N, C), (N, C, L) or (N, C, H, W) with positive sizes; viewed as (n, c, s).
MnnNormParams image_params(const char* op, const char* arg, const Tensor& x) {
  check::floating(op, arg, x);
  if (x.ndim() < 2 || x.ndim() > 4)
    fail(ErrorKind::Value, op, "expected ", arg, " of shape (N, C), (N, C, L) or (N, C, H, W), got shape ",
         shape_str(x.shape()));
  for (auto d : x.shape())
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(x.shape()));
  int64_t s = 1;
  for (int i = 2; i < x.ndim(); ++i) s *= x.dim(i);
  if (x.numel() > (int64_t)INT32_MAX)
    fail(ErrorKind::Value, op, arg, " is too large for 32-bit indices, got shape ", shape_str(x.shape()));
  MnnNormParams p{};
  p.n = (int32_t)x.dim(0);
  p.c = (int32_t)x.dim(1);
  p.s = (int32_t)s;
  p.groups = 1;
  p.size = 1;
  return p;
}

// A float32 (C,) per-channel tensor next to x.
void channel_vector(const char* op, const char* arg, const Tensor& t, const Tensor& x) {
  check::dtype(op, arg, t, DType::float32);
  check::shape(op, arg, t, {x.dim(1)});
  check::same_device(op, arg, t, "x", x);
}

void check_epsilon(const char* op, double epsilon) {
  check::finite(op, "epsilon", epsilon);
  check::in_range(op, "epsilon", epsilon, 0.0, 1e30, /*lo_open=*/true);
}

void check_gradient_input(const char* op, const Tensor& dy, const Tensor& x, const Shape& input_shape,
                          DType dtype) {
  check::floating(op, "x", x);
  if (x.dtype() != dtype)
    fail(ErrorKind::Type, op, "x must have the dtype of the forward input (", dtype_name(dtype), "), got ",
         dtype_name(x.dtype()));
  check::shape(op, "x", x, input_shape);
  check::like(op, "dy", dy, "x", x);
}

}  // namespace

std::pair<Tensor, std::shared_ptr<BatchNormState>> batch_norm_forward(const Tensor& x, const Tensor& gamma,
                                                                      const Tensor& beta, const Tensor& running_mean,
                                                                      const Tensor& running_var, bool training,
                                                                      double momentum, double epsilon) {
  const char* op = "batch_norm_forward";
  MnnNormParams p = image_params(op, "x", x);
  channel_vector(op, "gamma", gamma, x);
  channel_vector(op, "beta", beta, x);
  if (running_mean.defined() != running_var.defined())
    fail(ErrorKind::Value, op, running_mean.defined() ? "running_var" : "running_mean",
         " is missing: pass running_mean and running_var together");
  if (!training && !running_mean.defined())
    fail(ErrorKind::Value, op, "running_mean and running_var are required in inference mode (training=False)");
  if (running_mean.defined()) {
    channel_vector(op, "running_mean", running_mean, x);
    channel_vector(op, "running_var", running_var, x);
    check::no_overlap(op, "running_mean", running_mean, "running_var", running_var);
    for (const Tensor* t : {&x, &gamma, &beta}) {
      check::no_overlap(op, "running_mean", running_mean, "an input", *t);
      check::no_overlap(op, "running_var", running_var, "an input", *t);
    }
  }
  check::finite(op, "momentum", momentum);
  check::in_range(op, "momentum", momentum, 0.0, 1.0);
  check_epsilon(op, epsilon);
  const int64_t count = (int64_t)p.n * p.s;
  if (training && count < 2)
    fail(ErrorKind::Value, op, "x must hold more than one value per channel in training mode (N * H * W = ",
         count, ", shape ", shape_str(x.shape()), ")");
  p.epsilon = (float)epsilon;
  p.momentum = (float)momentum;
  p.count = (float)count;
  p.flags = training ? MNN_NORM_BATCH_STATISTICS : 0u;

  auto state = std::make_shared<BatchNormState>();
  state->batch_statistics = training;
  state->epsilon = p.epsilon;
  state->input_shape = x.shape();
  state->dtype = x.dtype();
  if (training) {
    state->mean = Tensor::empty({x.dim(1)}, DType::float32, x.device());
    state->variance = Tensor::empty({x.dim(1)}, DType::float32, x.device());
    dispatch(op, x.device(), [&] { cpu::batch_norm_statistics(x, state->mean, state->variance, p); },
             [&] { metal::batch_norm_statistics(x, state->mean, state->variance, p); },
             cuda_kernel([&] { cuda::batch_norm_statistics(x, state->mean, state->variance, p); }));
  } else {
    // The state refers to the running statistics (nothing changes them in inference mode).
    state->mean = running_mean;
    state->variance = running_var;
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const Tensor &mean = state->mean, &var = state->variance;
  dispatch(op, x.device(), [&] { cpu::batch_norm_forward(x, gamma, beta, mean, var, y, p); },
           [&] { metal::batch_norm_forward(x, gamma, beta, mean, var, y, p); },
           cuda_kernel([&] { cuda::batch_norm_forward(x, gamma, beta, mean, var, y, p); }));
  if (training && running_mean.defined()) {
    dispatch(op, x.device(), [&] { cpu::batch_norm_update_running(running_mean, running_var, mean, var, p); },
             [&] { metal::batch_norm_update_running(running_mean, running_var, mean, var, p); },
             cuda_kernel([&] { cuda::batch_norm_update_running(running_mean, running_var, mean, var, p); }));
  }
  return {y, state};
}

NormGradients batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const std::shared_ptr<State>& state) {
  const char* op = "batch_norm_backward";
  const auto& s = state_as<BatchNormState>(state, op, "batch_norm_forward");
  check_gradient_input(op, dy, x, s.input_shape, s.dtype);
  MnnNormParams p = image_params(op, "x", x);
  channel_vector(op, "gamma", gamma, x);
  check::same_device(op, "state", s.mean, "x", x);
  p.epsilon = s.epsilon;
  p.count = (float)((int64_t)p.n * p.s);
  p.flags = s.batch_statistics ? MNN_NORM_BATCH_STATISTICS : 0u;
  NormGradients g;
  g.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  g.dgamma = Tensor::empty({x.dim(1)}, DType::float32, x.device());
  g.dbeta = Tensor::empty({x.dim(1)}, DType::float32, x.device());
  dispatch(op, x.device(),
           [&] { cpu::batch_norm_backward(dy, x, gamma, s.mean, s.variance, g.dx, g.dgamma, g.dbeta, p); },
           [&] { metal::batch_norm_backward(dy, x, gamma, s.mean, s.variance, g.dx, g.dgamma, g.dbeta, p); },
           cuda_kernel([&] { cuda::batch_norm_backward(dy, x, gamma, s.mean, s.variance, g.dx, g.dgamma, g.dbeta, p); }));
  return g;
}

std::pair<Tensor, std::shared_ptr<GroupNormState>> group_norm_forward(const Tensor& x, const Tensor& gamma,
                                                                      const Tensor& beta, int64_t groups,
                                                                      double epsilon, const char* op) {
  MnnNormParams p = image_params(op, "x", x);
  channel_vector(op, "gamma", gamma, x);
  channel_vector(op, "beta", beta, x);
  check::positive(op, "groups", groups);
  if (x.dim(1) % groups)
    fail(ErrorKind::Value, op, "groups (", groups, ") must divide the channels of x (", x.dim(1), ")");
  check_epsilon(op, epsilon);
  p.groups = (int32_t)groups;
  p.epsilon = (float)epsilon;
  auto state = std::make_shared<GroupNormState>();
  state->groups = groups;
  state->epsilon = p.epsilon;
  state->input_shape = x.shape();
  state->dtype = x.dtype();
  state->source = op;
  state->mean = Tensor::empty({x.dim(0), groups}, DType::float32, x.device());
  state->inv_std = Tensor::empty({x.dim(0), groups}, DType::float32, x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const Tensor &mean = state->mean, &inv_std = state->inv_std;
  dispatch(op, x.device(), [&] { cpu::group_norm_forward(x, gamma, beta, y, mean, inv_std, p); },
           [&] { metal::group_norm_forward(x, gamma, beta, y, mean, inv_std, p); },
           cuda_kernel([&] { cuda::group_norm_forward(x, gamma, beta, y, mean, inv_std, p); }));
  return {y, state};
}

NormGradients group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const std::shared_ptr<State>& state, const char* op) {
  const auto& s = state_as<GroupNormState>(state, op, "group_norm_forward, instance_norm_forward or layer_norm_forward");
  check_gradient_input(op, dy, x, s.input_shape, s.dtype);
  MnnNormParams p = image_params(op, "x", x);
  channel_vector(op, "gamma", gamma, x);
  check::same_device(op, "state", s.mean, "x", x);
  p.groups = (int32_t)s.groups;
  p.epsilon = s.epsilon;
  NormGradients g;
  g.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  g.dgamma = Tensor::empty({x.dim(1)}, DType::float32, x.device());
  g.dbeta = Tensor::empty({x.dim(1)}, DType::float32, x.device());
  dispatch(op, x.device(),
           [&] { cpu::group_norm_backward(dy, x, gamma, s.mean, s.inv_std, g.dx, g.dgamma, g.dbeta, p); },
           [&] { metal::group_norm_backward(dy, x, gamma, s.mean, s.inv_std, g.dx, g.dgamma, g.dbeta, p); },
           cuda_kernel([&] { cuda::group_norm_backward(dy, x, gamma, s.mean, s.inv_std, g.dx, g.dgamma, g.dbeta, p); }));
  return g;
}

CrossChannelNormDescriptor CrossChannelNormDescriptor::make(int64_t size, double alpha, double beta, double delta,
                                                            const char* op) {
  check::positive(op, "size", size);
  if (size > 1 << 16) fail(ErrorKind::Value, op, "size must be <= 65536, got ", size);
  check::finite(op, "alpha", alpha);
  check::finite(op, "beta", beta);
  check::finite(op, "delta", delta);
  if (alpha < 0) fail(ErrorKind::Value, op, "alpha must be >= 0, got ", alpha);
  if (!(delta > 0)) fail(ErrorKind::Value, op, "delta must be > 0, got ", delta);
  CrossChannelNormDescriptor d;
  d.size = size;
  d.alpha = alpha;
  d.beta = beta;
  d.delta = delta;
  return d;
}

namespace {
MnnNormParams lrn_params(const char* op, const Tensor& x, const CrossChannelNormDescriptor& d) {
  MnnNormParams p = image_params(op, "x", x);
  p.size = (int32_t)d.size;
  p.alpha = (float)d.alpha;
  p.beta = (float)d.beta;
  p.delta = (float)d.delta;
  return p;
}
}  // namespace

Tensor cross_channel_norm_forward(const Tensor& x, const CrossChannelNormDescriptor& d) {
  const char* op = "cross_channel_norm_forward";
  MnnNormParams p = lrn_params(op, x, d);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::cross_channel_norm_forward(x, y, p); },
           [&] { metal::cross_channel_norm_forward(x, y, p); },
           cuda_kernel([&] { cuda::cross_channel_norm_forward(x, y, p); }));
  return y;
}

Tensor cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const CrossChannelNormDescriptor& d) {
  const char* op = "cross_channel_norm_backward";
  MnnNormParams p = lrn_params(op, x, d);
  check::like(op, "dy", dy, "x", x);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::cross_channel_norm_backward(dy, x, dx, p); },
           [&] { metal::cross_channel_norm_backward(dy, x, dx, p); },
           cuda_kernel([&] { cuda::cross_channel_norm_backward(dy, x, dx, p); }));
  return dx;
}

}  // namespace metalnn

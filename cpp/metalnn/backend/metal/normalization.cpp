#include "metalnn/backend/metal/normalization.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {

// `groups` threadgroups, each striding over `per_group` elements with whole SIMD groups; the
// kernels keep one partial per SIMD group in a 32-entry array, so at most 1024 threads.
void reduce_launch(KernelCall& k, const char* op, int64_t groups, int64_t per_group) {
  if (groups > (int64_t)UINT32_MAX) fail(ErrorKind::Value, op, groups, " threadgroups exceed 2^32");
  size_t width = threadgroup_width(k.pipeline(), (size_t)per_group, 1024);
  k.groups((size_t)groups, 1, 1, width);
}

}  // namespace

// Buffers: x 0, mean 1, var 2, params 3; a threadgroup per channel.
void batch_norm_statistics(const Tensor& x, const Tensor& mean, const Tensor& var, const MnnNormParams& p) {
  const char* op = "batch_norm_forward";
  KernelCall k(op, kernel_name("batch_norm_statistics", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, mean, Access::write).buffer(2, var, Access::write).bytes(3, p);
  reduce_launch(k, op, p.c, (int64_t)p.n * p.s);
}

// Buffers: running_mean 0, running_var 1 (read-write), mean 2, var 3, params 4; a thread per channel.
void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, const MnnNormParams& p) {
  const char* op = "batch_norm_forward";
  KernelCall k(op, "batch_norm_update_running_float32");  // statistics are float32 only
  k.buffer(0, running_mean, Access::read_write).buffer(1, running_var, Access::read_write);
  k.buffer(2, mean, Access::read).buffer(3, var, Access::read).bytes(4, p);
  k.threads((size_t)p.c);
}

// Buffers: x 0, gamma 1, beta 2, mean 3, var 4, y 5, params 6; a thread per element.
void batch_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                        const Tensor& var, const Tensor& y, const MnnNormParams& p) {
  const char* op = "batch_norm_forward";
  KernelCall k(op, kernel_name("batch_norm_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, gamma, Access::read).buffer(2, beta, Access::read);
  k.buffer(3, mean, Access::read).buffer(4, var, Access::read).buffer(5, y, Access::write).bytes(6, p);
  k.threads(element_count(op, x));
}

// Two dispatches: dgamma / dbeta (buffers dy 0, x 1, mean 2, var 3, dgamma 4, dbeta 5, params 6;
// a threadgroup per channel), then dx (dy 0, x 1, gamma 2, mean 3, var 4, dgamma 5, dbeta 6,
// dx 7, params 8; a thread per element), which reads the first's results.
void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& var, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  const char* op = "batch_norm_backward";
  {
    KernelCall k(op, kernel_name("batch_norm_backward_params", x.dtype()));
    k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, mean, Access::read);
    k.buffer(3, var, Access::read).buffer(4, dgamma, Access::write).buffer(5, dbeta, Access::write).bytes(6, p);
    reduce_launch(k, op, p.c, (int64_t)p.n * p.s);
  }
  KernelCall k(op, kernel_name("batch_norm_backward", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, gamma, Access::read);
  k.buffer(3, mean, Access::read).buffer(4, var, Access::read).buffer(5, dgamma, Access::read);
  k.buffer(6, dbeta, Access::read).buffer(7, dx, Access::write).bytes(8, p);
  k.threads(element_count(op, x));
}

// Buffers: x 0, gamma 1, beta 2, y 3, mean 4, inv_std 5, params 6; a threadgroup per (n, group).
void group_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                        const Tensor& mean, const Tensor& inv_std, const MnnNormParams& p) {
  const char* op = "group_norm_forward";
  KernelCall k(op, kernel_name("group_norm_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, gamma, Access::read).buffer(2, beta, Access::read);
  k.buffer(3, y, Access::write).buffer(4, mean, Access::write).buffer(5, inv_std, Access::write).bytes(6, p);
  reduce_launch(k, op, (int64_t)p.n * p.groups, (int64_t)(p.c / p.groups) * p.s);
}

// Two dispatches: dx (dy 0, x 1, gamma 2, mean 3, inv_std 4, dx 5, params 6; a threadgroup per
// (n, group)) and dgamma / dbeta (dy 0, x 1, mean 2, inv_std 3, dgamma 4, dbeta 5, params 6; a
// threadgroup per channel).
void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& inv_std, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  const char* op = "group_norm_backward";
  {
    KernelCall k(op, kernel_name("group_norm_backward", x.dtype()));
    k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, gamma, Access::read);
    k.buffer(3, mean, Access::read).buffer(4, inv_std, Access::read).buffer(5, dx, Access::write).bytes(6, p);
    reduce_launch(k, op, (int64_t)p.n * p.groups, (int64_t)(p.c / p.groups) * p.s);
  }
  KernelCall k(op, kernel_name("group_norm_backward_params", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, mean, Access::read);
  k.buffer(3, inv_std, Access::read).buffer(4, dgamma, Access::write).buffer(5, dbeta, Access::write).bytes(6, p);
  reduce_launch(k, op, p.c, (int64_t)p.n * p.s);
}

// Buffers: x 0, y 1, params 2; a thread per element.
void cross_channel_norm_forward(const Tensor& x, const Tensor& y, const MnnNormParams& p) {
  const char* op = "cross_channel_norm_forward";
  KernelCall k(op, kernel_name("cross_channel_norm_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p);
  k.threads(element_count(op, x));
}

// Buffers: dy 0, x 1, dx 2, params 3; a thread per element.
void cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNormParams& p) {
  const char* op = "cross_channel_norm_backward";
  KernelCall k(op, kernel_name("cross_channel_norm_backward", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  k.threads(element_count(op, x));
}

}  // namespace metalnn::metal

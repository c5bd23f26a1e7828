#include "metalnn/ops/softmax.h"

#include <climits>

#include "metalnn/backend/cpu/softmax.h"
#include "metalnn/backend/cuda/softmax.h"
#include "metalnn/backend/metal/softmax.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {

MnnSoftmaxParams softmax_params(const char* op, const char* arg, const Tensor& x, bool log) {
  if (x.ndim() != 2 && x.ndim() != 4)
    fail(ErrorKind::Value, op, "expected 2-D ", arg, " (N, C) or 4-D ", arg, " (N, C, H, W), got shape ",
         shape_str(x.shape()));
  check::non_empty(op, arg, x);
  int64_t s = x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1;
  if (x.dim(0) > INT32_MAX || x.dim(1) > INT32_MAX || s > INT32_MAX)
    fail(ErrorKind::Value, op, arg, " is too large, got shape ", shape_str(x.shape()));
  return MnnSoftmaxParams{(int32_t)x.dim(0), (int32_t)x.dim(1), (int32_t)s, log ? 1u : 0u};
}

namespace {

Tensor forward(const char* op, const Tensor& x, bool log) {
  check::floating(op, "x", x);
  auto p = softmax_params(op, "x", x, log);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::softmax_forward(x, y, p); }, [&] { metal::softmax_forward(x, y, p); },
           cuda_kernel([&] { cuda::softmax_forward(x, y, p); }));
  return y;
}

Tensor backward(const char* op, const Tensor& dy, const Tensor& y, bool log) {
  check::floating(op, "y", y);
  auto p = softmax_params(op, "y", y, log);
  check::same_dtype(op, "dy", dy, "y", y);
  check::same_device(op, "dy", dy, "y", y);
  check::shape(op, "dy", dy, y.shape());
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  dispatch(op, y.device(), [&] { cpu::softmax_backward(dy, y, dx, p); },
           [&] { metal::softmax_backward(dy, y, dx, p); },
           cuda_kernel([&] { cuda::softmax_backward(dy, y, dx, p); }));
  return dx;
}

}  // namespace

Tensor softmax_forward(const Tensor& x) { return forward("softmax_forward", x, false); }
Tensor log_softmax_forward(const Tensor& x) { return forward("log_softmax_forward", x, true); }
Tensor softmax_backward(const Tensor& dy, const Tensor& y) { return backward("softmax_backward", dy, y, false); }
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y) {
  return backward("log_softmax_backward", dy, y, true);
}

}  // namespace metalnn

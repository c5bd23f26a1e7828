#include "metalnn/ops/dropout.h"

#include <cmath>

#include "metalnn/backend/cpu/dropout.h"
#include "metalnn/backend/cuda/dropout.h"
#include "metalnn/backend/metal/dropout.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {

void DropoutDescriptor::validate(const char* op) const {
  if (!(keep_probability > 0.0 && keep_probability <= 1.0))
    fail(ErrorKind::Value, op, "keep_probability must be in (0, 1], got ", keep_probability);
}

MnnDropoutParams DropoutDescriptor::params() const {
  MnnDropoutParams p{};
  p.seed = seed;
  // u = bits / 2^24 < keep  <=>  bits < ceil(keep * 2^24) for integer bits (exact in double).
  p.threshold = (uint32_t)std::ceil(keep_probability * 16777216.0);
  p.keep_probability = (float)keep_probability;
  p.scale = (float)(1.0 / keep_probability);
  return p;
}

std::pair<Tensor, std::shared_ptr<DropoutState>> dropout_forward(const Tensor& x, const DropoutDescriptor& desc) {
  const char* op = "dropout_forward";
  desc.validate(op);
  check::floating(op, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mask = Tensor::empty(x.shape(), DType::uint8, x.device());
  auto p = desc.params();
  dispatch(op, x.device(), [&] { cpu::dropout_forward(x, y, mask, p); },
           [&] { metal::dropout_forward(x, y, mask, p); },
           cuda_kernel([&] {
             cuda::dropout_forward(x, y, mask, p, {desc.device_counter, desc.counter_offset, desc.base_seed});
           }));
  return {y, std::make_shared<DropoutState>(mask, desc)};
}

Tensor dropout_backward(const Tensor& dy, const std::shared_ptr<State>& state) {
  const char* op = "dropout_backward";
  const auto& s = state_as<DropoutState>(state, op, "dropout_forward");
  check::floating(op, "dy", dy);
  check::shape(op, "dy", dy, s.shape());
  check::same_device(op, "dy", dy, "state.mask", s.mask());
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  auto p = s.descriptor().params();
  dispatch(op, dy.device(), [&] { cpu::dropout_backward(dy, s.mask(), dx, p); },
           [&] { metal::dropout_backward(dy, s.mask(), dx, p); },
           cuda_kernel([&] { cuda::dropout_backward(dy, s.mask(), dx, p); }));
  return dx;
}

}  // namespace metalnn

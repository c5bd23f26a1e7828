#include "metalnn/ops/linear.h"

#include <algorithm>
#include <climits>

#include "metalnn/backend/cpu/linear.h"
#include "metalnn/backend/cuda/layer.h"
#include "metalnn/backend/metal/linear.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/conv.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

// Checks a 2-D (N, F) or 4-D (N, C, H, W) shape with positive sizes; returns F.
int64_t features(const char* op, const char* arg, const Shape& s, const char* layout) {
  if (s.size() != 2 && s.size() != 4)
    fail(ErrorKind::Value, op, "expected 2-D or 4-D ", arg, " ", layout, ", got shape ", shape_str(s));
  for (int64_t d : s)
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(s));
  int64_t f = shape_numel(s) / s[0];
  if (s[0] > INT32_MAX || f > INT32_MAX) fail(ErrorKind::Value, op, arg, " is too large, got shape ", shape_str(s));
  return f;
}

// The kernel must cover the input: same F, and the same (C, H, W) when both are images.
MnnFullyConnectedParams geometry(const char* op, const Shape& x, const char* x_arg, const Shape& w,
                                 const char* w_arg) {
  int64_t fx = features(op, x_arg, x, "(N, F) or (N, C, H, W)");
  int64_t fw = features(op, w_arg, w, "(O, F) or (O, C, H, W)");
  bool same = fx == fw && (x.size() != 4 || w.size() != 4 || Shape(x.begin() + 1, x.end()) == Shape(w.begin() + 1, w.end()));
  if (!same)
    fail(ErrorKind::Value, op, w_arg, " ", shape_str(w), " does not cover ", x_arg, " ", shape_str(x),
         ": features F = ", fw, " vs ", fx);
  MnnFullyConnectedParams p{};
  p.batch = (int32_t)x[0];
  p.in_features = (int32_t)fx;
  p.out_features = (int32_t)w[0];
  return p;
}

void check_dy(const char* op, const Tensor& dy, const MnnFullyConnectedParams& p) {
  check::shape(op, "dy", dy, {p.batch, p.out_features});
}

}  // namespace

FullyConnectedDescriptor FullyConnectedDescriptor::make(const std::string& accumulation, const char* op) {
  FullyConnectedDescriptor d;
  d.accumulation = parse_accumulation(accumulation, op);
  return d;
}

Tensor fully_connected_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const FullyConnectedDescriptor& desc) {
  return fully_connected_forward(x, weight, bias, desc, NeuronDescriptor{}, nullptr);
}

Tensor fully_connected_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const FullyConnectedDescriptor& desc, const NeuronDescriptor& neuron,
                               Tensor* pre_activation) {
  const char* op = "fully_connected_forward";
  layer::check_operand(op, "weight", weight, "x", x);
  MnnFullyConnectedParams p = geometry(op, x.shape(), "x", weight.shape(), "weight");
  p.has_bias = layer::check_forward(op, x, bias, weight.dim(0), desc.accumulation, neuron);
  p.accumulation = (uint32_t)desc.accumulation;
  layer::FusedOutputs out({p.batch, p.out_features}, x, pre_activation);
  dispatch(op, x.device(),
           [&] { cpu::fully_connected_forward(x, weight, bias, out.y, p, neuron.params(), out.z); },
           [&] { metal::fully_connected_forward(x, weight, bias, out.y, p, neuron.params(), out.z); },
           cuda_kernel([&] { cuda::fully_connected_forward(x, weight, bias, out.y, p, neuron.params(), out.z); }));
  return out.finish();
}

Tensor fully_connected_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                                      const FullyConnectedDescriptor& desc) {
  const char* op = "fully_connected_backward_input";
  layer::check_operand(op, "weight", weight, "dy", dy);
  MnnFullyConnectedParams p = geometry(op, input_shape, "input_shape", weight.shape(), "weight");
  check_dy(op, dy, p);
  layer::check_accumulation(op, dy, desc.accumulation);
  p.accumulation = (uint32_t)desc.accumulation;
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::fully_connected_backward_input(dy, weight, dx, p); },
           [&] { metal::fully_connected_backward_input(dy, weight, dx, p); },
           cuda_kernel([&] { cuda::fully_connected_backward_input(dy, weight, dx, p); }));
  return dx;
}

Tensor fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape) {
  const char* op = "fully_connected_backward_weight";
  layer::check_operand(op, "x", x, "dy", dy);
  check::rank(op, "dy", dy, 2, "(N, O)");
  Shape ws = weight_shape;
  if (ws.empty()) ws = {dy.dim(1), x.ndim() >= 1 ? x.numel() / std::max<int64_t>(x.dim(0), 1) : 0};
  MnnFullyConnectedParams p = geometry(op, x.shape(), "x", ws, "weight_shape");
  if (ws[0] != dy.dim(1))
    fail(ErrorKind::Value, op, "weight_shape ", shape_str(ws), " has O = ", ws[0], " but dy has ", dy.dim(1),
         " columns");
  check_dy(op, dy, p);
  Tensor dw = Tensor::empty(ws, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::fully_connected_backward_weight(dy, x, dw, p); },
           [&] { metal::fully_connected_backward_weight(dy, x, dw, p); },
           cuda_kernel([&] { cuda::fully_connected_backward_weight(dy, x, dw, p); }));
  return dw;
}

Tensor fully_connected_backward_bias(const Tensor& dy) {
  return layer::bias_gradient("fully_connected_backward_bias", dy, 2, "(N, O)");
}

}  // namespace metalnn

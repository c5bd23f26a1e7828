#include "metalnn/ops/conv.h"

#include <climits>

#include "metalnn/backend/cpu/conv.h"
#include "metalnn/backend/cpu/linear.h"
#include "metalnn/backend/cuda/layer.h"
#include "metalnn/backend/metal/conv.h"
#include "metalnn/backend/metal/linear.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// {a} -> (a, a); {a, b} stays; anything else raises.
void pair_of(const char* op, const char* arg, const std::vector<int64_t>& v, int64_t& a, int64_t& b) {
  if (v.size() != 1 && v.size() != 2)
    fail(ErrorKind::Value, op, arg, " must be an int or a pair of ints, got ", list_str(v));
  a = v[0];
  b = v.size() == 2 ? v[1] : v[0];
}

void shape_rank(const char* op, const char* arg, const Shape& s, const char* layout) {
  if (s.size() != 4) fail(ErrorKind::Value, op, "expected 4-D ", arg, " ", layout, ", got shape ", shape_str(s));
  for (int64_t d : s)
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(s));
  for (int64_t d : s)
    if (d > INT32_MAX) fail(ErrorKind::Value, op, arg, " is too large, got shape ", shape_str(s));
}

Shape out_shape(const MnnConv2dParams& p) {
  return {p.batch, p.out_channels, p.out_height, p.out_width};
}

}  // namespace

MnnAccumulation parse_accumulation(const std::string& name, const char* op) {
  if (name == "float") return MNN_ACCUMULATE_FLOAT;
  if (name == "half") return MNN_ACCUMULATE_HALF;
  fail(ErrorKind::Value, op, "accumulation: unknown option '", name, "' (expected 'float' or 'half')");
}

const char* accumulation_name(MnnAccumulation a) { return a == MNN_ACCUMULATE_HALF ? "half" : "float"; }

Conv2dDescriptor Conv2dDescriptor::make(const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                                        const std::vector<int64_t>& dilation, int64_t groups,
                                        const std::string& accumulation, const char* op) {
  Conv2dDescriptor d;
  pair_of(op, "stride", stride, d.stride_y, d.stride_x);
  pair_of(op, "dilation", dilation, d.dilation_y, d.dilation_x);
  if (padding.size() == 4) {
    d.pad_top = padding[0], d.pad_bottom = padding[1], d.pad_left = padding[2], d.pad_right = padding[3];
  } else if (padding.size() == 1 || padding.size() == 2) {
    pair_of(op, "padding", padding, d.pad_top, d.pad_left);
    d.pad_bottom = d.pad_top, d.pad_right = d.pad_left;
  } else {
    fail(ErrorKind::Value, op, "padding must be an int, (ph, pw) or (top, bottom, left, right), got ",
         list_str(padding));
  }
  for (int64_t s : {d.stride_y, d.stride_x}) check::positive(op, "stride", s);
  for (int64_t s : {d.dilation_y, d.dilation_x}) check::positive(op, "dilation", s);
  for (int64_t s : {d.pad_top, d.pad_bottom, d.pad_left, d.pad_right}) check::non_negative(op, "padding", s);
  for (int64_t s : {d.stride_y, d.stride_x, d.dilation_y, d.dilation_x, d.pad_top, d.pad_bottom, d.pad_left,
                    d.pad_right})
    if (s > INT32_MAX / 2) fail(ErrorKind::Value, op, "stride, padding and dilation must be < 2^30, got ", s);
  check::positive(op, "groups", groups);
  d.groups = groups;
  d.accumulation = parse_accumulation(accumulation, op);
  return d;
}

MnnConv2dParams Conv2dDescriptor::params(const char* op, const Shape& x, const char* x_arg, const Shape& w,
                                         const char* w_arg) const {
  shape_rank(op, x_arg, x, "(N, C, H, W)");
  shape_rank(op, w_arg, w, "(O, C/groups, kH, kW)");
  if (w[0] % groups != 0)
    fail(ErrorKind::Value, op, w_arg, ": out_channels ", w[0], " is not divisible by groups=", groups);
  if (x[1] != groups * w[1])
    fail(ErrorKind::Value, op, x_arg, " has ", x[1], " channels but ", w_arg, " ", shape_str(w), " with groups=",
         groups, " expects groups * ", w_arg, ".shape[1] = ", groups * w[1]);
  int64_t ext_h = dilation_y * (w[2] - 1) + 1, ext_w = dilation_x * (w[3] - 1) + 1;
  int64_t span_h = x[2] + pad_top + pad_bottom - ext_h, span_w = x[3] + pad_left + pad_right - ext_w;
  if (span_h < 0 || span_w < 0)
    fail(ErrorKind::Value, op, x_arg, ": output size would be < 1: padded input ", x[2] + pad_top + pad_bottom,
         "x", x[3] + pad_left + pad_right, " is smaller than the dilated kernel ", ext_h, "x", ext_w);
  MnnConv2dParams p{};
  p.batch = (int32_t)x[0];
  p.in_channels = (int32_t)x[1];
  p.in_height = (int32_t)x[2];
  p.in_width = (int32_t)x[3];
  p.out_channels = (int32_t)w[0];
  p.out_height = (int32_t)(span_h / stride_y + 1);
  p.out_width = (int32_t)(span_w / stride_x + 1);
  p.kernel_height = (int32_t)w[2];
  p.kernel_width = (int32_t)w[3];
  p.stride_y = (int32_t)stride_y;
  p.stride_x = (int32_t)stride_x;
  p.dilation_y = (int32_t)dilation_y;
  p.dilation_x = (int32_t)dilation_x;
  p.pad_top = (int32_t)pad_top;
  p.pad_bottom = (int32_t)pad_bottom;
  p.pad_left = (int32_t)pad_left;
  p.pad_right = (int32_t)pad_right;
  p.groups = (int32_t)groups;
  p.accumulation = (uint32_t)accumulation;
  p.has_bias = 0;
  return p;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dDescriptor& desc) {
  return conv2d_forward(x, weight, bias, desc, NeuronDescriptor{}, nullptr);
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dDescriptor& desc,
                      const NeuronDescriptor& neuron, Tensor* pre_activation) {
  const char* op = "conv2d_forward";
  layer::check_operand(op, "weight", weight, "x", x);
  MnnConv2dParams p = desc.params(op, x.shape(), "x", weight.shape(), "weight");
  p.has_bias = layer::check_forward(op, x, bias, weight.dim(0), desc.accumulation, neuron);
  layer::FusedOutputs out(out_shape(p), x, pre_activation);
  dispatch(op, x.device(), [&] { cpu::conv2d_forward(x, weight, bias, out.y, p, neuron.params(), out.z); },
           [&] { metal::conv2d_forward(x, weight, bias, out.y, p, neuron.params(), out.z); },
           cuda_kernel([&] { cuda::conv2d_forward(x, weight, bias, out.y, p, neuron.params(), out.z); }));
  return out.finish();
}

Tensor conv2d_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                             const Conv2dDescriptor& desc) {
  const char* op = "conv2d_backward_input";
  layer::check_operand(op, "weight", weight, "dy", dy);
  MnnConv2dParams p = desc.params(op, input_shape, "input_shape", weight.shape(), "weight");
  check::shape(op, "dy", dy, out_shape(p));
  layer::check_accumulation(op, dy, desc.accumulation);
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::conv2d_backward_input(dy, weight, dx, p); },
           [&] { metal::conv2d_backward_input(dy, weight, dx, p); },
           cuda_kernel([&] { cuda::conv2d_backward_input(dy, weight, dx, p); }));
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape,
                              const Conv2dDescriptor& desc) {
  const char* op = "conv2d_backward_weight";
  layer::check_operand(op, "x", x, "dy", dy);
  MnnConv2dParams p = desc.params(op, x.shape(), "x", weight_shape, "weight_shape");
  p.accumulation = MNN_ACCUMULATE_FLOAT;
  check::shape(op, "dy", dy, out_shape(p));
  Tensor dw = Tensor::empty(weight_shape, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::conv2d_backward_weight(dy, x, dw, p); },
           [&] { metal::conv2d_backward_weight(dy, x, dw, p); },
           cuda_kernel([&] { cuda::conv2d_backward_weight(dy, x, dw, p); }));
  return dw;
}

Tensor conv2d_backward_bias(const Tensor& dy) {
  return layer::bias_gradient("conv2d_backward_bias", dy, 4, "(N, O, H, W)");
}

namespace layer {

NeuronDescriptor fused_neuron(const std::optional<std::string>& name, std::optional<float> a,
                              std::optional<float> b, const char* op) {
  if (!name) {
    if (a || b) fail(ErrorKind::Value, op, a ? "neuron_a" : "neuron_b", " is set but neuron is None");
    return NeuronDescriptor{};
  }
  std::string names;
  bool known = false;
  for (uint32_t t = 0; t < MNN_NEURON_COUNT; ++t) {
    known = known || *name == neuron_name((MnnNeuronType)t);
    names += (t ? ", " : "") + std::string(neuron_name((MnnNeuronType)t));
  }
  if (!known) fail(ErrorKind::Value, op, "neuron: unknown type '", *name, "' (expected one of ", names, ")");
  if (a) check::finite(op, "neuron_a", *a);
  if (b) check::finite(op, "neuron_b", *b);
  return NeuronDescriptor::make(*name, a, b, {}, op);
}

void check_operand(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref) {
  check::floating(op, ref_arg, ref);
  check::same_dtype(op, arg, t, ref_arg, ref);
  check::same_device(op, arg, t, ref_arg, ref);
}

void check_accumulation(const char* op, const Tensor& t, MnnAccumulation acc) {
  if (acc == MNN_ACCUMULATE_HALF && t.dtype() != DType::float16)
    fail(ErrorKind::Value, op, "accumulation='half' needs float16 storage, got ", dtype_name(t.dtype()));
}

bool check_forward(const char* op, const Tensor& x, const Tensor& bias, int64_t out_channels,
                   MnnAccumulation acc, const NeuronDescriptor& neuron) {
  if (bias.defined()) {
    check::same_dtype(op, "bias", bias, "x", x);
    check::same_device(op, "bias", bias, "x", x);
    check::shape(op, "bias", bias, {out_channels});
  }
  check_accumulation(op, x, acc);
  // C++ callers may set the type by hand; the Python path has checked the name already.
  if ((uint32_t)neuron.type >= MNN_NEURON_COUNT)
    fail(ErrorKind::Value, op, "neuron: unknown type ", (uint32_t)neuron.type);
  return bias.defined();
}

FusedOutputs::FusedOutputs(const Shape& shape, const Tensor& x, Tensor* pre_activation)
    : y(Tensor::empty(shape, x.dtype(), x.device())),
      z(pre_activation ? Tensor::empty(shape, x.dtype(), x.device()) : Tensor()),
      pre_(pre_activation) {}

Tensor FusedOutputs::finish() {
  if (pre_) *pre_ = z;
  return y;
}

namespace {
// Metal has one bias-gradient encoder per layer kind, each reading the sizes from its params.
void metal_bias_backward(const char* op, const Tensor& dy, const Tensor& db) {
  for (auto d : dy.shape())
    if (d > INT32_MAX) fail(ErrorKind::Value, op, "dy is too large, got shape ", shape_str(dy.shape()));
  if (dy.ndim() == 4) {
    MnnConv2dParams p{};
    p.batch = (int32_t)dy.dim(0);
    p.out_channels = (int32_t)dy.dim(1);
    p.out_height = (int32_t)dy.dim(2);
    p.out_width = (int32_t)dy.dim(3);
    p.groups = 1;
    metal::conv2d_backward_bias(dy, db, p);
  } else {
    MnnFullyConnectedParams p{};
    p.batch = (int32_t)dy.dim(0);
    p.out_features = (int32_t)dy.dim(1);
    metal::fully_connected_backward_bias(dy, db, p);
  }
}
}  // namespace

Tensor bias_gradient(const char* op, const Tensor& dy, int rank, const char* layout) {
  check::floating(op, "dy", dy);
  check::rank(op, "dy", dy, rank, layout);
  check::non_empty(op, "dy", dy);
  const int64_t N = dy.dim(0), O = dy.dim(1);
  Tensor db = Tensor::empty({O}, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::bias_backward(dy, db, N, O, dy.numel() / (N * O)); },
           [&] { metal_bias_backward(op, dy, db); },
           cuda_kernel([&] { cuda::bias_backward(dy, db, N, O, dy.numel() / (N * O)); }));
  return db;
}

}  // namespace layer
}  // namespace metalnn

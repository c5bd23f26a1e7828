#include "metalnn/ops/pooling.h"

#include <climits>

#include "metalnn/backend/cpu/pooling.h"
#include "metalnn/backend/cuda/pooling.h"
#include "metalnn/backend/metal/pooling.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

constexpr const char* kImage = "(N, C, H, W)";

std::string tuple_str(const std::vector<int64_t>& v) { return shape_str(Shape(v.begin(), v.end())); }

// Rejects planes whose element index would not fit the int32 argmax.
void check_input(const char* op, const char* arg, const Shape& s) {
  for (auto d : s)
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(s));
  if (s[2] * s[3] > INT32_MAX || s[0] * s[1] > INT32_MAX)
    fail(ErrorKind::Value, op, arg, " is too large for 32-bit indices, got shape ", shape_str(s));
}

// kernel_size / stride: an int or an (h, w) pair of positive sizes.
void positive_pair(const char* op, const char* arg, const std::vector<int64_t>& v, int64_t& h, int64_t& w) {
  if (v.size() != 1 && v.size() != 2) fail(ErrorKind::Value, op, arg, " must be an int or a pair, got ", tuple_str(v));
  for (auto k : v)
    if (k <= 0) fail(ErrorKind::Value, op, arg, " must be positive, got ", tuple_str(v));
  h = v[0];
  w = v.back();
}

// The image sizes of the kernel parameters; the window fields are left zero.
MnnPool2dParams image_params(const Shape& in, int64_t out_h, int64_t out_w) {
  MnnPool2dParams p{};
  p.n = (int32_t)in[0];
  p.c = (int32_t)in[1];
  p.h = (int32_t)in[2];
  p.w = (int32_t)in[3];
  p.out_h = (int32_t)out_h;
  p.out_w = (int32_t)out_w;
  return p;
}

// Whether a window starting at `start` with k taps `d` apart reads a position in [0, size).
bool has_tap(int64_t start, int64_t k, int64_t d, int64_t size) {
  int64_t first = start >= 0 ? 0 : (-start + d - 1) / d;  // first tap at or after 0
  return first < k && start + first * d < size;
}

// Output size along one axis of a dilated window; every window must read the input.
int64_t dilated_extent(const char* op, const char* axis, int64_t size, int64_t k, int64_t s, int64_t d, int64_t lo,
                       int64_t hi) {
  const int64_t ext = d * (k - 1) + 1;
  if (size + lo + hi < ext)
    fail(ErrorKind::Value, op, "the dilated kernel (", ext, " ", axis, ") is larger than the padded input (",
         size + lo + hi, ")");
  const int64_t out = (size + lo + hi - ext) / s + 1;
  for (int64_t o = 0; o < out; ++o)
    if (!has_tap(o * s - lo, k, d, size))
      fail(ErrorKind::Value, op, "padding and dilation leave window ", o, " along the ", axis,
           " with only padding (input ", size, ", kernel ", k, ", stride ", s, ", dilation ", d, ")");
  return out;
}

// The shared part of the max-pooling forwards (plain and dilated).
std::pair<Tensor, std::shared_ptr<MaxPool2dState>> max_pool(const char* op, const Tensor& x,
                                                            const Pool2dDescriptor& desc);

}  // namespace

Pool2dDescriptor Pool2dDescriptor::make_dilated(const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                                                const std::vector<int64_t>& padding,
                                                const std::vector<int64_t>& dilation, const char* op) {
  Pool2dDescriptor d = make(kernel, stride, padding, true, op);
  positive_pair(op, "dilation", dilation, d.dilation_h, d.dilation_w);
  if (d.dilation_h > INT32_MAX / 4 || d.dilation_w > INT32_MAX / 4)
    fail(ErrorKind::Value, op, "dilation must be < 2^29, got ", tuple_str(dilation));
  if (d.dilation_h * (d.kernel_h - 1) > INT32_MAX / 4 || d.dilation_w * (d.kernel_w - 1) > INT32_MAX / 4)
    fail(ErrorKind::Value, op, "dilation * (kernel_size - 1) must be < 2^29");
  return d;
}

Pool2dDescriptor Pool2dDescriptor::make(const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                                        const std::vector<int64_t>& padding, bool count_include_pad,
                                        const char* op) {
  Pool2dDescriptor d;
  positive_pair(op, "kernel_size", kernel, d.kernel_h, d.kernel_w);
  // No stride means windows side by side (stride = kernel_size).
  positive_pair(op, "stride", stride.empty() ? kernel : stride, d.stride_h, d.stride_w);
  if (padding.size() == 1 || padding.size() == 2) {
    d.pad_top = d.pad_bottom = padding[0];
    d.pad_left = d.pad_right = padding.back();
  } else if (padding.size() == 4) {
    d.pad_top = padding[0];
    d.pad_bottom = padding[1];
    d.pad_left = padding[2];
    d.pad_right = padding[3];
  } else {
    fail(ErrorKind::Value, op, "padding must be an int, a pair or (top, bottom, left, right), got ",
         tuple_str(padding));
  }
  for (auto p : padding)
    if (p < 0) fail(ErrorKind::Value, op, "padding must be >= 0, got ", tuple_str(padding));
  for (auto v : {d.kernel_h, d.kernel_w, d.stride_h, d.stride_w, d.pad_top, d.pad_bottom, d.pad_left, d.pad_right})
    if (v > INT32_MAX / 4) fail(ErrorKind::Value, op, "kernel_size, stride and padding must be < 2^29");
  d.count_include_pad = count_include_pad;
  return d;
}

Shape Pool2dDescriptor::output_shape(const Shape& in, const char* op) const {
  if (dilated())
    return {in[0], in[1], dilated_extent(op, "height", in[2], kernel_h, stride_h, dilation_h, pad_top, pad_bottom),
            dilated_extent(op, "width", in[3], kernel_w, stride_w, dilation_w, pad_left, pad_right)};
  int64_t hp = in[2] + pad_top + pad_bottom, wp = in[3] + pad_left + pad_right;
  if (hp < kernel_h || wp < kernel_w)
    fail(ErrorKind::Value, op, "kernel_size (", kernel_h, ", ", kernel_w, ") is larger than the padded input (",
         hp, ", ", wp, ")");
  int64_t oh = (hp - kernel_h) / stride_h + 1, ow = (wp - kernel_w) / stride_w + 1;
  // Windows move monotonically, so only the first and last along each axis can miss the input.
  if (pad_top >= kernel_h || pad_left >= kernel_w)
    fail(ErrorKind::Value, op, "padding (top ", pad_top, ", left ", pad_left,
         ") leaves the first window with only padding for kernel_size (", kernel_h, ", ", kernel_w, ")");
  if ((oh - 1) * stride_h - pad_top >= in[2] || (ow - 1) * stride_w - pad_left >= in[3])
    fail(ErrorKind::Value, op, "padding (bottom ", pad_bottom, ", right ", pad_right,
         ") leaves the last window with only padding for kernel_size (", kernel_h, ", ", kernel_w,
         ") and stride (", stride_h, ", ", stride_w, ")");
  return {in[0], in[1], oh, ow};
}

MnnPool2dParams Pool2dDescriptor::params(const Shape& in, const Shape& out) const {
  MnnPool2dParams p = image_params(in, out[2], out[3]);
  p.kernel_h = (int32_t)kernel_h;
  p.kernel_w = (int32_t)kernel_w;
  p.stride_h = (int32_t)stride_h;
  p.stride_w = (int32_t)stride_w;
  p.pad_top = (int32_t)pad_top;
  p.pad_bottom = (int32_t)pad_bottom;
  p.pad_left = (int32_t)pad_left;
  p.pad_right = (int32_t)pad_right;
  p.count_include_pad = count_include_pad ? 1u : 0u;
  return p;
}

MnnPool2dDilatedParams Pool2dDescriptor::dilated_params(const Shape& in, const Shape& out) const {
  MnnPool2dDilatedParams p{};
  p.pool = params(in, out);
  p.dilation_h = (int32_t)dilation_h;
  p.dilation_w = (int32_t)dilation_w;
  return p;
}

std::pair<Tensor, std::shared_ptr<MaxPool2dState>> max_pool2d_forward(const Tensor& x,
                                                                        const Pool2dDescriptor& desc) {
  Pool2dDescriptor plain = desc;
  plain.dilation_h = plain.dilation_w = 1;
  return max_pool("max_pool2d_forward", x, plain);
}

std::pair<Tensor, std::shared_ptr<MaxPool2dState>> dilated_max_pool2d_forward(const Tensor& x,
                                                                                const Pool2dDescriptor& desc) {
  return max_pool("dilated_max_pool2d_forward", x, desc);
}

namespace {
std::pair<Tensor, std::shared_ptr<MaxPool2dState>> max_pool(const char* op, const Tensor& x,
                                                            const Pool2dDescriptor& desc) {
  check::rank(op, "x", x, 4, kImage);
  check::floating(op, "x", x);
  check_input(op, "x", x.shape());
  Shape out = desc.output_shape(x.shape(), op);
  auto state = std::make_shared<MaxPool2dState>();
  state->argmax = Tensor::empty(out, DType::int32, x.device());
  state->input_shape = x.shape();
  state->dtype = x.dtype();
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  auto p = desc.params(x.shape(), out);
  state->params = p;
  if (desc.dilated()) {
    auto dp = desc.dilated_params(x.shape(), out);
    state->dilation_h = dp.dilation_h;
    state->dilation_w = dp.dilation_w;
    dispatch(op, x.device(), [&] { cpu::dilated_max_pool2d_forward(x, y, state->argmax, dp); },
             [&] { metal::dilated_max_pool2d_forward(x, y, state->argmax, dp); },
             cuda_kernel([&] { cuda::dilated_max_pool2d_forward(x, y, state->argmax, dp); }));
    return {y, state};
  }
  dispatch(op, x.device(), [&] { cpu::max_pool2d_forward(x, y, state->argmax, p); },
           [&] { metal::max_pool2d_forward(x, y, state->argmax, p); },
           cuda_kernel([&] { cuda::max_pool2d_forward(x, y, state->argmax, p); }));
  return {y, state};
}
}  // namespace

Tensor max_pool2d_backward(const Tensor& dy, const std::shared_ptr<State>& state) {
  const char* op = "max_pool2d_backward";
  const auto& s = state_as<MaxPool2dState>(state, op, "max_pool2d_forward");
  check::floating(op, "dy", dy);
  if (dy.dtype() != s.dtype)
    fail(ErrorKind::Type, op, "dy must have the dtype of the forward input (", dtype_name(s.dtype), "), got ",
         dtype_name(dy.dtype()));
  check::shape(op, "dy", dy, s.argmax.shape());
  check::same_device(op, "dy", dy, "state", s.argmax);
  Tensor dx = Tensor::empty(s.input_shape, dy.dtype(), dy.device());
  MnnPool2dParams p = image_params(s.input_shape, dy.dim(2), dy.dim(3));
  if (s.dilation_h != 1 || s.dilation_w != 1) {
    // The GPU gathers over the forward's dilated windows; the CPU scatters by argmax.
    MnnPool2dDilatedParams dp{s.params, s.dilation_h, s.dilation_w};
    dispatch(op, dy.device(), [&] { cpu::max_pool2d_backward(dy, s.argmax, dx, p); },
             [&] { metal::dilated_max_pool2d_backward(dy, s.argmax, dx, dp); },
             cuda_kernel([&] { cuda::dilated_max_pool2d_backward(dy, s.argmax, dx, dp); }));
    return dx;
  }
  dispatch(op, dy.device(), [&] { cpu::max_pool2d_backward(dy, s.argmax, dx, p); },
           [&] { metal::max_pool2d_backward(dy, s.argmax, dx, s.params); },
           cuda_kernel([&] { cuda::max_pool2d_backward(dy, s.argmax, dx, s.params); }));
  return dx;
}

Tensor avg_pool2d_forward(const Tensor& x, const Pool2dDescriptor& desc) {
  const char* op = "avg_pool2d_forward";
  check::rank(op, "x", x, 4, kImage);
  check::floating(op, "x", x);
  check_input(op, "x", x.shape());
  Shape out = desc.output_shape(x.shape(), op);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  auto p = desc.params(x.shape(), out);
  dispatch(op, x.device(), [&] { cpu::avg_pool2d_forward(x, y, p); },
           [&] { metal::avg_pool2d_forward(x, y, p); },
           cuda_kernel([&] { cuda::avg_pool2d_forward(x, y, p); }));
  return y;
}

Tensor avg_pool2d_backward(const Tensor& dy, const Shape& input_shape, const Pool2dDescriptor& desc) {
  const char* op = "avg_pool2d_backward";
  if (input_shape.size() != 4)
    fail(ErrorKind::Value, op, "input_shape must be (N, C, H, W), got ", shape_str(input_shape));
  check_input(op, "input_shape", input_shape);
  check::rank(op, "dy", dy, 4, kImage);
  check::floating(op, "dy", dy);
  Shape out = desc.output_shape(input_shape, op);
  check::shape(op, "dy", dy, out);
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  auto p = desc.params(input_shape, out);
  dispatch(op, dy.device(), [&] { cpu::avg_pool2d_backward(dy, dx, p); },
           [&] { metal::avg_pool2d_backward(dy, dx, p); },
           cuda_kernel([&] { cuda::avg_pool2d_backward(dy, dx, p); }));
  return dx;
}

Tensor l2_pool2d_forward(const Tensor& x, const Pool2dDescriptor& desc) {
  const char* op = "l2_pool2d_forward";
  check::rank(op, "x", x, 4, kImage);
  check::floating(op, "x", x);
  check_input(op, "x", x.shape());
  Shape out = desc.output_shape(x.shape(), op);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  auto p = desc.dilated_params(x.shape(), out);
  dispatch(op, x.device(), [&] { cpu::l2_pool2d_forward(x, y, p); }, [&] { metal::l2_pool2d_forward(x, y, p); },
           cuda_kernel([&] { cuda::l2_pool2d_forward(x, y, p); }));
  return y;
}

Tensor l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Pool2dDescriptor& desc) {
  const char* op = "l2_pool2d_backward";
  check::rank(op, "x", x, 4, kImage);
  check::floating(op, "x", x);
  check_input(op, "x", x.shape());
  check::rank(op, "dy", dy, 4, kImage);
  check::same_dtype(op, "dy", dy, "x", x);
  check::same_device(op, "dy", dy, "x", x);
  Shape out = desc.output_shape(x.shape(), op);
  check::shape(op, "dy", dy, out);
  check::like(op, "y", y, "dy", dy);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  auto p = desc.dilated_params(x.shape(), out);
  dispatch(op, x.device(), [&] { cpu::l2_pool2d_backward(dy, x, y, dx, p); },
           [&] { metal::l2_pool2d_backward(dy, x, y, dx, p); },
           cuda_kernel([&] { cuda::l2_pool2d_backward(dy, x, y, dx, p); }));
  return dx;
}

}  // namespace metalnn

#include "metalnn/ops/shape.h"

#include <climits>

#include "metalnn/backend/cpu/shape.h"
#include "metalnn/backend/cuda/shape.h"
#include "metalnn/backend/metal/shape.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

constexpr const char* kImage = "(N, C, H, W)";

std::string list_str(const std::vector<int64_t>& v) { return shape_str(Shape(v.begin(), v.end())); }

// A 4-D float image with positive sizes whose extents fit the kernels' 32-bit indices.
void check_image(const char* op, const char* arg, const Tensor& t) {
  check::rank(op, arg, t, 4, kImage);
  check::floating(op, arg, t);
  for (auto d : t.shape())
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(t.shape()));
  if (t.numel() > INT32_MAX) fail(ErrorKind::Value, op, arg, " is too large for 32-bit indices (", t.numel(), ")");
}

void check_extent(const char* op, const char* what, const Shape& s) {
  if (shape_numel(s) > INT32_MAX) fail(ErrorKind::Value, op, what, " ", shape_str(s), " is too large for 32-bit indices");
}

MnnShapeParams image_params(const Shape& in, const Shape& out) {
  MnnShapeParams p{};
  p.n = (int32_t)in[0];
  p.c = (int32_t)in[1];
  p.h = (int32_t)in[2];
  p.w = (int32_t)in[3];
  p.out_c = (int32_t)out[1];
  p.out_h = (int32_t)out[2];
  p.out_w = (int32_t)out[3];
  p.scale_h = p.scale_w = 1;
  return p;
}

void check_scale(const char* op, int64_t sh, int64_t sw) {
  if (sh < 1 || sw < 1 || sh > (1 << 16) || sw > (1 << 16))
    fail(ErrorKind::Value, op, "scale_factor must be integers in [1, 65536], got (", sh, ", ", sw, ")");
}

// The upsampled output of an (N, C, H, W) input.
Shape upsampled(const char* op, const Shape& in, int64_t sh, int64_t sw) {
  Shape out{in[0], in[1], in[2] * sh, in[3] * sw};
  check_extent(op, "output", out);
  return out;
}

// The input a gradient dy of an upsampling came from: dy's H, W must divide by the scale.
Shape downsampled(const char* op, const Tensor& dy, int64_t sh, int64_t sw) {
  if (dy.dim(2) % sh || dy.dim(3) % sw)
    fail(ErrorKind::Value, op, "dy has spatial size (", dy.dim(2), ", ", dy.dim(3),
         ") that is not a multiple of scale_factor (", sh, ", ", sw, ")");
  return {dy.dim(0), dy.dim(1), dy.dim(2) / sh, dy.dim(3) / sw};
}

MnnShapeParams upsample_params(const Shape& in, const Shape& out, int64_t sh, int64_t sw, bool align) {
  MnnShapeParams p = image_params(in, out);
  p.scale_h = (int32_t)sh;
  p.scale_w = (int32_t)sw;
  p.mode = align ? 1u : 0u;
  return p;
}

// Window params: output (k, i, j) reads input (k - off_c, i - off_h, j - off_w).
MnnShapeParams window_params(const Shape& in, const Shape& out, int64_t oc, int64_t oh, int64_t ow, MnnPadMode mode) {
  MnnShapeParams p = image_params(in, out);
  p.off_c = (int32_t)oc;
  p.off_h = (int32_t)oh;
  p.off_w = (int32_t)ow;
  p.mode = (uint32_t)mode;
  return p;
}

void run_window(const char* op, const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  dispatch(op, x.device(), [&] { cpu::pad_forward(x, y, p); }, [&] { metal::pad_forward(x, y, p); },
           cuda_kernel([&] { cuda::pad_forward(x, y, p); }));
}

const char* kPadModes[MNN_PAD_MODE_COUNT] = {"zero", "edge", "reflect"};

}  // namespace

// ---- upsampling

Tensor upsample_nearest_forward(const Tensor& x, int64_t sh, int64_t sw) {
  const char* op = "upsample_nearest_forward";
  check_image(op, "x", x);
  check_scale(op, sh, sw);
  Shape out = upsampled(op, x.shape(), sh, sw);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  auto p = upsample_params(x.shape(), out, sh, sw, false);
  dispatch(op, x.device(), [&] { cpu::upsample_nearest_forward(x, y, p); },
           [&] { metal::upsample_nearest_forward(x, y, p); },
           cuda_kernel([&] { cuda::upsample_nearest_forward(x, y, p); }));
  return y;
}

Tensor upsample_nearest_backward(const Tensor& dy, int64_t sh, int64_t sw) {
  const char* op = "upsample_nearest_backward";
  check_image(op, "dy", dy);
  check_scale(op, sh, sw);
  Shape in = downsampled(op, dy, sh, sw);
  Tensor dx = Tensor::empty(in, dy.dtype(), dy.device());
  auto p = upsample_params(in, dy.shape(), sh, sw, false);
  dispatch(op, dy.device(), [&] { cpu::upsample_nearest_backward(dy, dx, p); },
           [&] { metal::upsample_nearest_backward(dy, dx, p); },
           cuda_kernel([&] { cuda::upsample_nearest_backward(dy, dx, p); }));
  return dx;
}

Tensor upsample_bilinear_forward(const Tensor& x, int64_t sh, int64_t sw, bool align_corners) {
  const char* op = "upsample_bilinear_forward";
  check_image(op, "x", x);
  check_scale(op, sh, sw);
  Shape out = upsampled(op, x.shape(), sh, sw);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  auto p = upsample_params(x.shape(), out, sh, sw, align_corners);
  dispatch(op, x.device(), [&] { cpu::upsample_bilinear_forward(x, y, p); },
           [&] { metal::upsample_bilinear_forward(x, y, p); },
           cuda_kernel([&] { cuda::upsample_bilinear_forward(x, y, p); }));
  return y;
}

Tensor upsample_bilinear_backward(const Tensor& dy, int64_t sh, int64_t sw, bool align_corners) {
  const char* op = "upsample_bilinear_backward";
  check_image(op, "dy", dy);
  check_scale(op, sh, sw);
  Shape in = downsampled(op, dy, sh, sw);
  Tensor dx = Tensor::empty(in, dy.dtype(), dy.device());
  auto p = upsample_params(in, dy.shape(), sh, sw, align_corners);
  dispatch(op, dy.device(), [&] { cpu::upsample_bilinear_backward(dy, dx, p); },
           [&] { metal::upsample_bilinear_backward(dy, dx, p); },
           cuda_kernel([&] { cuda::upsample_bilinear_backward(dy, dx, p); }));
  return dx;
}

// ---- concatenation

Tensor concat_forward(const std::vector<Tensor>& xs) {
  const char* op = "concat_forward";
  if (xs.empty()) fail(ErrorKind::Value, op, "xs must hold at least one image");
  int64_t channels = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    std::string arg = "xs[" + std::to_string(k) + "]";
    check_image(op, arg.c_str(), xs[k]);
    if (k) {
      check::same_dtype(op, arg.c_str(), xs[k], "xs[0]", xs[0]);
      check::same_device(op, arg.c_str(), xs[k], "xs[0]", xs[0]);
      if (xs[k].dim(0) != xs[0].dim(0) || xs[k].dim(2) != xs[0].dim(2) || xs[k].dim(3) != xs[0].dim(3))
        fail(ErrorKind::Value, op, arg, " has shape ", shape_str(xs[k].shape()),
             " but every input needs the batch and spatial size of xs[0] ", shape_str(xs[0].shape()));
    }
    channels += xs[k].dim(1);
  }
  Shape out{xs[0].dim(0), channels, xs[0].dim(2), xs[0].dim(3)};
  check_extent(op, "output", out);
  Tensor y = Tensor::empty(out, xs[0].dtype(), xs[0].device());
  int64_t offset = 0;
  for (const auto& x : xs) {
    MnnShapeParams p = window_params(x.shape(), out, offset, 0, 0, MNN_PAD_ZERO);
    dispatch(op, x.device(), [&] { cpu::concat_forward(x, y, p); }, [&] { metal::concat_forward(x, y, p); },
             cuda_kernel([&] { cuda::concat_forward(x, y, p); }));
    offset += x.dim(1);
  }
  return y;
}

std::vector<Tensor> concat_backward(const Tensor& dy, const std::vector<int64_t>& channels) {
  const char* op = "concat_backward";
  check_image(op, "dy", dy);
  if (channels.empty()) fail(ErrorKind::Value, op, "channels must hold at least one size");
  int64_t total = 0;
  for (auto c : channels) {
    if (c <= 0) fail(ErrorKind::Value, op, "channels must be positive, got ", list_str(channels));
    total += c;
  }
  if (total != dy.dim(1))
    fail(ErrorKind::Value, op, "channels ", list_str(channels), " sum to ", total, " but dy has ", dy.dim(1),
         " feature channels");
  std::vector<Tensor> out;
  int64_t offset = 0;
  for (auto c : channels) {
    Shape s{dy.dim(0), c, dy.dim(2), dy.dim(3)};
    Tensor dx = Tensor::empty(s, dy.dtype(), dy.device());
    run_window(op, dy, dx, window_params(dy.shape(), s, -offset, 0, 0, MNN_PAD_ZERO));
    out.push_back(dx);
    offset += c;
  }
  return out;
}

// ---- reshape

Tensor reshape_forward(const Tensor& x, const Shape& shape) {
  const char* op = "reshape_forward";
  if (shape.empty()) fail(ErrorKind::Value, op, "shape must have at least one dimension");
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) fail(ErrorKind::Value, op, "shape may hold only one -1, got ", shape_str(shape));
      infer = (int)i;
    } else if (s[i] <= 0) {
      fail(ErrorKind::Value, op, "shape must be positive sizes (one may be -1), got ", shape_str(shape));
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (x.numel() % known)
      fail(ErrorKind::Value, op, "shape ", shape_str(shape), " does not divide x of shape ", shape_str(x.shape()));
    s[(size_t)infer] = x.numel() / known;
  }
  if (shape_numel(s) != x.numel())
    fail(ErrorKind::Value, op, "shape ", shape_str(shape), " holds ", shape_numel(s), " elements but x of shape ",
         shape_str(x.shape()), " holds ", x.numel());
  return x.reshape(s);
}

Tensor reshape_backward(const Tensor& dy, const Shape& input_shape) {
  const char* op = "reshape_backward";
  for (auto d : input_shape)
    if (d <= 0) fail(ErrorKind::Value, op, "input_shape must be positive sizes, got ", shape_str(input_shape));
  if (shape_numel(input_shape) != dy.numel())
    fail(ErrorKind::Value, op, "input_shape ", shape_str(input_shape), " holds ", shape_numel(input_shape),
         " elements but dy of shape ", shape_str(dy.shape()), " holds ", dy.numel());
  return dy.reshape(input_shape);
}

// ---- padding

const char* pad_mode_name(MnnPadMode mode) { return mode < MNN_PAD_MODE_COUNT ? kPadModes[mode] : "?"; }

PadDescriptor PadDescriptor::make(const std::vector<int64_t>& padding, const std::vector<int64_t>& channels,
                                  const std::string& mode, const char* op) {
  PadDescriptor d;
  if (padding.size() == 1 || padding.size() == 2) {
    d.top = d.bottom = padding[0];
    d.left = d.right = padding.back();
  } else if (padding.size() == 4) {
    d.top = padding[0];
    d.bottom = padding[1];
    d.left = padding[2];
    d.right = padding[3];
  } else {
    fail(ErrorKind::Value, op, "padding must be an int, a pair or (top, bottom, left, right), got ",
         list_str(padding));
  }
  if (channels.size() == 2) {
    d.front = channels[0];
    d.back = channels[1];
  } else if (!channels.empty()) {
    fail(ErrorKind::Value, op, "channels must be a (front, back) pair, got ", list_str(channels));
  }
  for (auto v : {d.front, d.back, d.top, d.bottom, d.left, d.right})
    if (v < 0 || v > (1 << 24))
      fail(ErrorKind::Value, op, "padding and channels must be in [0, 2^24], got padding ", list_str(padding),
           " channels ", list_str(channels));
  bool found = false;
  for (uint32_t m = 0; m < MNN_PAD_MODE_COUNT; ++m)
    if (mode == kPadModes[m]) {
      d.mode = (MnnPadMode)m;
      found = true;
    }
  if (!found) fail(ErrorKind::Value, op, "mode must be 'zero', 'edge' or 'reflect', got '", mode, "'");
  return d;
}

Shape PadDescriptor::output_shape(const Shape& in, const char* op) const {
  if (mode == MNN_PAD_REFLECT) {
    // One mirror image per side: padding must be smaller than the axis it reflects.
    const char* names[3] = {"channels", "height", "width"};
    int64_t before[3] = {front, top, left}, after[3] = {back, bottom, right};
    for (int a = 0; a < 3; ++a)
      if (before[a] >= in[(size_t)a + 1] || after[a] >= in[(size_t)a + 1])
        fail(ErrorKind::Value, op, "reflect padding (", before[a], ", ", after[a], ") along ", names[a],
             " must be smaller than the input's ", names[a], " (", in[(size_t)a + 1], ")");
  }
  Shape out{in[0], in[1] + front + back, in[2] + top + bottom, in[3] + left + right};
  check_extent(op, "output", out);
  return out;
}

Tensor pad_forward(const Tensor& x, const PadDescriptor& d) {
  const char* op = "pad_forward";
  check_image(op, "x", x);
  Shape out = d.output_shape(x.shape(), op);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  run_window(op, x, y, window_params(x.shape(), out, d.front, d.top, d.left, d.mode));
  return y;
}

Tensor pad_backward(const Tensor& dy, const Shape& input_shape, const PadDescriptor& d) {
  const char* op = "pad_backward";
  if (input_shape.size() != 4)
    fail(ErrorKind::Value, op, "input_shape must be (N, C, H, W), got ", shape_str(input_shape));
  for (auto v : input_shape)
    if (v <= 0) fail(ErrorKind::Value, op, "input_shape must have positive sizes, got ", shape_str(input_shape));
  check_image(op, "dy", dy);
  Shape out = d.output_shape(input_shape, op);
  check::shape(op, "dy", dy, out);
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  if (d.mode == MNN_PAD_ZERO) {  // every input position is read once: a crop of dy
    run_window(op, dy, dx, window_params(out, input_shape, -d.front, -d.top, -d.left, MNN_PAD_ZERO));
    return dx;
  }
  MnnShapeParams p = window_params(input_shape, out, d.front, d.top, d.left, d.mode);
  dispatch(op, dy.device(), [&] { cpu::pad_backward(dy, dx, p); }, [&] { metal::pad_backward(dy, dx, p); },
           cuda_kernel([&] { cuda::pad_backward(dy, dx, p); }));
  return dx;
}

// ---- crop

namespace {
void triple(const char* op, const char* arg, const std::vector<int64_t>& v) {
  if (v.size() != 3) fail(ErrorKind::Value, op, arg, " must be (channels, height, width), got ", list_str(v));
}
}  // namespace

Tensor crop_forward(const Tensor& x, const std::vector<int64_t>& offset, const std::vector<int64_t>& size) {
  const char* op = "crop_forward";
  check_image(op, "x", x);
  triple(op, "offset", offset);
  triple(op, "size", size);
  for (int a = 0; a < 3; ++a) {
    if (offset[(size_t)a] < 0) fail(ErrorKind::Value, op, "offset must be >= 0, got ", list_str(offset));
    if (size[(size_t)a] <= 0) fail(ErrorKind::Value, op, "size must be positive, got ", list_str(size));
    if (offset[(size_t)a] + size[(size_t)a] > x.dim(a + 1))
      fail(ErrorKind::Value, op, "offset ", list_str(offset), " + size ", list_str(size),
           " reaches outside x of shape ", shape_str(x.shape()));
  }
  Shape out{x.dim(0), size[0], size[1], size[2]};
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  run_window(op, x, y, window_params(x.shape(), out, -offset[0], -offset[1], -offset[2], MNN_PAD_ZERO));
  return y;
}

Tensor crop_backward(const Tensor& dy, const Shape& input_shape, const std::vector<int64_t>& offset) {
  const char* op = "crop_backward";
  check_image(op, "dy", dy);
  triple(op, "offset", offset);
  if (input_shape.size() != 4)
    fail(ErrorKind::Value, op, "input_shape must be (N, C, H, W), got ", shape_str(input_shape));
  if (input_shape[0] != dy.dim(0))
    fail(ErrorKind::Value, op, "input_shape ", shape_str(input_shape), " must have dy's batch size ", dy.dim(0));
  for (int a = 0; a < 3; ++a)
    if (offset[(size_t)a] < 0 || offset[(size_t)a] + dy.dim(a + 1) > input_shape[(size_t)a + 1])
      fail(ErrorKind::Value, op, "offset ", list_str(offset), " places dy of shape ", shape_str(dy.shape()),
           " outside input_shape ", shape_str(input_shape));
  check_extent(op, "input_shape", input_shape);
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  run_window(op, dy, dx, window_params(dy.shape(), input_shape, offset[0], offset[1], offset[2], MNN_PAD_ZERO));
  return dx;
}

// ---- data converters

Tensor image_to_matrix(const Tensor& x) {
  const char* op = "image_to_matrix";
  check::rank(op, "x", x, 4, kImage);
  check::floating(op, "x", x);
  return x.reshape({x.dim(0), x.dim(1) * x.dim(2) * x.dim(3)});
}

Tensor matrix_to_image(const Tensor& m, int64_t channels, int64_t height, int64_t width) {
  const char* op = "matrix_to_image";
  check::rank(op, "m", m, 2, "(rows, columns)");
  check::floating(op, "m", m);
  if (channels <= 0 || height <= 0 || width <= 0)
    fail(ErrorKind::Value, op, "image shape (channels, height, width) must be positive, got (", channels, ", ",
         height, ", ", width, ")");
  if (channels * height * width != m.dim(1))
    fail(ErrorKind::Value, op, "m has ", m.dim(1), " columns but (channels, height, width) = (", channels, ", ",
         height, ", ", width, ") holds ", channels * height * width);
  return m.reshape({m.dim(0), channels, height, width});
}

// ---- matrix transpose

namespace {
// Both directions: one (R, C) -> (C, R) copy; MnnShapeParams carries (h, w) = (R, C).
Tensor transpose_matrix(const char* op, const char* arg, const Tensor& x) {
  check::rank(op, arg, x, 2, "(rows, columns)");
  check::floating(op, arg, x);
  check_extent(op, arg, x.shape());
  Tensor y = Tensor::empty({x.dim(1), x.dim(0)}, x.dtype(), x.device());
  if (x.numel() == 0) return y;
  MnnShapeParams p{};
  p.n = p.c = p.out_c = 1;
  p.h = p.out_w = (int32_t)x.dim(0);
  p.w = p.out_h = (int32_t)x.dim(1);
  p.scale_h = p.scale_w = 1;
  dispatch(op, x.device(), [&] { cpu::transpose_matrix(x, y, p); }, [&] { metal::transpose_matrix(x, y, p); },
           cuda_kernel([&] { cuda::transpose_matrix(x, y, p); }));
  return y;
}
}  // namespace

Tensor transpose_matrix_forward(const Tensor& x) { return transpose_matrix("transpose_matrix_forward", "x", x); }

Tensor transpose_matrix_backward(const Tensor& dy) { return transpose_matrix("transpose_matrix_backward", "dy", dy); }

}  // namespace metalnn

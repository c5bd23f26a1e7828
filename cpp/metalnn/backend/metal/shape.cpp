#include "metalnn/backend/metal/shape.h"

#include <algorithm>

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {
namespace {

// Every shape kernel: in 0, out 1, params 2; `grid` threads (one per output or input element).
void encode(const char* op, const char* stem, const Tensor& in, const Tensor& out, const MnnShapeParams& p,
            const Tensor& grid, Access out_access = Access::write) {
  KernelCall k(op, kernel_name(stem, in.dtype()));
  k.buffer(0, in, Access::read).buffer(1, out, out_access).bytes(2, p);
  k.threads(element_count(op, grid));
}

}  // namespace

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  encode("upsample_nearest_forward", "upsample_nearest_forward", x, y, p, y);
}

// One thread per input element (gather of its block).
void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  encode("upsample_nearest_backward", "upsample_nearest_backward", dy, dx, p, dx);
}

void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  encode("upsample_bilinear_forward", "upsample_bilinear_forward", x, y, p, y);
}

void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  encode("upsample_bilinear_backward", "upsample_bilinear_backward", dy, dx, p, dx);
}

void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  encode("pad_forward", "pad_forward", x, y, p, y);
}

void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  encode("pad_backward", "pad_backward", dy, dx, p, dx);
}

// One thread per element of x; y's other channels are written by the other inputs' calls,
// so y is bound read-write (a staged binding must keep what they wrote).
void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  encode("concat_forward", "concat_forward", x, y, p, x, Access::read_write);
}

// One threadgroup of 32 x ty threads per 32 x 32 tile (ty = 8, fewer if the pipeline allows
// fewer threads): the kernel steps its rows by ty.
void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const char* op = "transpose_matrix";
  KernelCall k(op, kernel_name("transpose_matrix_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p);
  const size_t ty = std::max<size_t>(1, std::min<size_t>(8, k.pipeline().max_threads / 32));
  k.groups(((size_t)p.w + 31) / 32, ((size_t)p.h + 31) / 32, 1, 32, ty);
}

}  // namespace metalnn::metal

#include "metalnn/core/copy.h"

#include <cstring>

#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/device.h"
#endif

namespace metalnn {

void copy_from_host(const Tensor& dst, const void* src, const char* op) {
  if (dst.nbytes() == 0) return;
#ifdef METALNN_HAS_CUDA
  if (dst.device().type == DeviceType::cuda) return cuda::copy_to_device(dst.raw(), src, dst.nbytes(), op);
#endif
  std::memcpy(dst.raw(), src, dst.nbytes());
}

Tensor to_host(const Tensor& t, const char* op) {
#ifdef METALNN_HAS_CUDA
  if (t.device().type == DeviceType::cuda) {
    Tensor h = Tensor::empty(t.shape(), t.dtype());
    if (t.nbytes()) cuda::copy_to_host(h.raw(), t.raw(), t.nbytes(), op);
    return h;
  }
#endif
  (void)op;
  return t;
}

Tensor to_device(const Tensor& t, Device device, const char* op) {
  Tensor d = Tensor::empty(t.shape(), t.dtype(), device);
  copy_from_host(d, t.raw(), op);
  return d;
}

}  // namespace metalnn

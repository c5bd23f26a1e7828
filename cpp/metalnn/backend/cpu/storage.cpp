#include "metalnn/backend/cpu/storage.h"

#include <cstring>

namespace metalnn::cpu {

std::vector<float> to_float_vector(const Tensor& t) {
  std::vector<float> out((size_t)t.numel());
  if (t.dtype() == DType::float32) std::memcpy(out.data(), t.raw(), t.nbytes());
  else half_to_float_n(t.data<uint16_t>(), out.data(), out.size());
  return out;
}

void store_floats(const float* src, const Tensor& dst) {
  if (dst.dtype() == DType::float32) std::memcpy(dst.raw(), src, dst.nbytes());
  else float_to_half_n(src, dst.data<uint16_t>(), (size_t)dst.numel());
}

}  // namespace metalnn::cpu

#include "metalnn/backend/cpu/conv_transpose.h"

#include <algorithm>
#include <vector>

#include "metalnn/backend/cpu/neuron.h"
#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {

void conv_transpose2d_epilogue(const Tensor& t, const Tensor& bias, const MnnNeuronParams& neuron, const Tensor& y) {
  const int64_t C = t.dim(1), plane = t.dim(2) * t.dim(3), planes = t.dim(0) * C;
  const std::vector<float> b = bias.defined() ? to_float_vector(bias) : std::vector<float>();
  const bool in_place = y.raw() == t.raw(), half = t.dtype() == DType::float16;
  const bool has_neuron = neuron.type != MNN_NEURON_NONE;
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(plane, 1));
  parallel_for(planes, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf(half ? (size_t)plane : 0);
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t at = i * plane;
      float* row = half ? buf.data() : t.data<float>() + at;
      if (half) half_to_float_n(t.data<uint16_t>() + at, row, (size_t)plane);
      if (!b.empty()) {
        const float bc = b[(size_t)(i % C)];
        for (int64_t j = 0; j < plane; ++j) row[j] += bc;
      }
      // z stays in t (float32 rows are t itself); y = f(z).
      if (half && (!in_place || !has_neuron)) float_to_half_n(row, t.data<uint16_t>() + at, (size_t)plane);
      if (in_place && !has_neuron) continue;
      if (!half) {
        float* out = y.data<float>() + at;
        if (has_neuron) neuron_forward_block(row, out, plane, neuron);
        else std::copy(row, row + plane, out);
      } else {
        if (has_neuron) neuron_forward_block(row, row, plane, neuron);
        float_to_half_n(row, y.data<uint16_t>() + at, (size_t)plane);
      }
    }
  });
}

}  // namespace metalnn::cpu

#include "metalnn/backend/cpu/conv_epilogue.h"

#include <cstring>

#include "metalnn/backend/cpu/neuron.h"
#include "metalnn/backend/cpu/storage.h"

namespace metalnn::cpu {

void Epilogue::channel_row(float* row, int64_t n, int64_t at, int64_t channel) const {
  if (bias) {
    const float b = bias[channel];
    for (int64_t j = 0; j < n; ++j) row[j] += b;
  }
  finish(row, n, at);
}

void Epilogue::feature_row(float* row, int64_t n, int64_t at, int64_t first) const {
  if (bias) {
    const float* b = bias + first;
    for (int64_t j = 0; j < n; ++j) row[j] += b[j];
  }
  finish(row, n, at);
}

void Epilogue::finish(float* row, int64_t n, int64_t at) const {
  if (pre) {
    if (pre->dtype() == DType::float32) std::memcpy(pre->data<float>() + at, row, sizeof(float) * (size_t)n);
    else float_to_half_n(row, pre->data<uint16_t>() + at, (size_t)n);
  }
  if (neuron.type != MNN_NEURON_NONE) neuron_forward_block(row, row, n, neuron);
}

}  // namespace metalnn::cpu

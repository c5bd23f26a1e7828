// The fused epilogue of the convolution and fully connected forwards. Right after a row
// of the product is computed in float32 (still in cache): z = row + bias, z is kept as the
// pre-activation when asked for (rounded to its storage), and y = f(z) replaces the row.
#pragma once
#include <cstdint>

#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

struct Epilogue {
  const float* bias = nullptr;                            // float32, per channel / feature; null: none
  MnnNeuronParams neuron{MNN_NEURON_NONE, 0.f, 0.f, 0.f};  // f; type none: y = z
  const Tensor* pre = nullptr;                            // receives z (y's shape and dtype); null: not kept

  // row[j] is output element at + j, all of one channel (a conv output row): z = row + bias[channel].
  void channel_row(float* row, int64_t n, int64_t at, int64_t channel) const;
  // row[j] is output element at + j of feature first + j (a fully connected row): z = row + bias[first + j].
  void feature_row(float* row, int64_t n, int64_t at, int64_t first) const;
  // row already holds z (the half-accumulation loops add their own bias): keep z, apply f.
  void finish(float* row, int64_t n, int64_t at) const;
};

}  // namespace metalnn::cpu

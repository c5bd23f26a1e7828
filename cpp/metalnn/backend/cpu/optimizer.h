#pragma once
#include <cstdint>
#include <vector>

#include "kernels/optimizer_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// One tensor of a (multi-tensor) optimizer step. Weights and gradients share a float
// dtype; state pointers are float32 with the same element count, null when absent.
struct OptimizerSlot {
  const Tensor* weights;
  const Tensor* gradients;
  float* state[3];
};

// Each call runs one parallel region over all slots' elements together.
void sgd_step(const std::vector<OptimizerSlot>& slots, const MnnSgdParams& p);
void adam_step(const std::vector<OptimizerSlot>& slots, const MnnAdamParams& p);      // state: m, v, v_max
void rmsprop_step(const std::vector<OptimizerSlot>& slots, const MnnRmsPropParams& p);  // state: s

}  // namespace metalnn::cpu

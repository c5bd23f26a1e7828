// Optimizer step encoders (kernels in cpp/kernels/optimizer.metal), in place. Same shapes as
// cpu::sgd_step / adam_step / rmsprop_step; state is passed as tensors (the GPU must bind them).
#pragma once
#include <vector>

#include "kernels/optimizer_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// One tensor of a (multi-tensor) optimizer step. Weights and gradients share a float dtype;
// state tensors are float32 with the weights' element count, null when absent.
struct OptimizerSlot {
  const Tensor* weights;
  const Tensor* gradients;
  const Tensor* state[3];
};

// When the weights, the gradients and each used state of all slots lie in one block each
// (arenas), one *_step_many dispatch updates every slot; otherwise one dispatch per slot.
void sgd_step(const std::vector<OptimizerSlot>& slots, const MnnSgdParams& p);      // state: v
void adam_step(const std::vector<OptimizerSlot>& slots, const MnnAdamParams& p);    // state: m, v, v_max
void rmsprop_step(const std::vector<OptimizerSlot>& slots, const MnnRmsPropParams& p);  // state: s

}  // namespace metalnn::metal

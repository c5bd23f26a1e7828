// SGD / Adam / RMSProp on CUDA: every tensor of a *_step_many call in one launch (up to
// 48 tensors a launch; float32 and float16 weights go in separate launches).
#pragma once
#include <vector>

#include "kernels/optimizer_params.h"
#include "metalnn/backend/cpu/optimizer.h"  // OptimizerSlot

namespace metalnn::cuda {

void sgd_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnSgdParams& p);
void adam_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnAdamParams& p);  // state: m, v, v_max
void rmsprop_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnRmsPropParams& p);

}  // namespace metalnn::cuda

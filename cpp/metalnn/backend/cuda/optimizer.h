// SGD / Adam / RMSProp on CUDA: every tensor of a *_step_many call in one launch (up to
// 48 tensors a launch; float32 and float16 weights go in separate launches).
#pragma once
#include <vector>

#include "kernels/optimizer_params.h"
#include "metalnn/backend/cpu/optimizer.h"  // OptimizerSlot

namespace metalnn::cuda {

void sgd_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnSgdParams& p);
// Adam's step read on the device (CUDA graph replay): t = *step + offset, and
// lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) in double, as the host computes it.
struct AdamDeviceStep {
  const int64_t* step = nullptr;
  int64_t offset = 0;
  double learning_rate = 0.0, beta1 = 0.0, beta2 = 0.0;
};
void adam_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnAdamParams& p,
               const AdamDeviceStep& device_step = {});  // state: m, v, v_max
void rmsprop_step(const std::vector<cpu::OptimizerSlot>& slots, const MnnRmsPropParams& p);

}  // namespace metalnn::cuda

// Dropout, as MPSCNNDropout: y = x * mask / keep_probability with mask[i] = 1 when
// u(seed, i) < keep_probability, u a counter-based hash of (seed, flat index) in [0, 1)
// (kernels/dropout_params.h). The mask depends only on seed and index, never on the
// backend or thread count. The gradient reuses the forward's mask: dx = dy * mask / keep.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>

#include "kernels/dropout_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct DropoutDescriptor {
  double keep_probability = 0.5;  // in (0, 1]; 1 is the identity
  uint64_t seed = 0;
  // CUDA graph replay: when set, the seed is derived on the device from a counter word,
  // seed = key(base_seed ^ key(*device_counter + counter_offset)) (key = mnn_dropout_key),
  // the same as a graph step computes on the host, so every replay draws a fresh mask.
  const int64_t* device_counter = nullptr;
  int64_t counter_offset = 0;
  uint64_t base_seed = 0;

  void validate(const char* op) const;
  MnnDropoutParams params() const;
};

// What dropout_forward hands to dropout_backward: the uint8 mask (1 kept, 0 dropped).
class DropoutState : public State {
 public:
  DropoutState(Tensor mask, const DropoutDescriptor& desc) : mask_(std::move(mask)), desc_(desc) {}
  const char* source_op() const override { return "dropout_forward"; }
  const Tensor& mask() const { return mask_; }
  const Shape& shape() const { return mask_.shape(); }
  double keep_probability() const { return desc_.keep_probability; }
  uint64_t seed() const { return desc_.seed; }
  const DropoutDescriptor& descriptor() const { return desc_; }

 private:
  Tensor mask_;
  DropoutDescriptor desc_;
};

std::pair<Tensor, std::shared_ptr<DropoutState>> dropout_forward(const Tensor& x, const DropoutDescriptor& desc);
Tensor dropout_backward(const Tensor& dy, const std::shared_ptr<State>& state);

}  // namespace metalnn

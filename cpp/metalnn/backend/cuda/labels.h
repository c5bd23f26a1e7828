// Loss labels converted on the device (class indices to int32, probabilities to float32),
// so a CUDA graph captured once reads each replayed batch's labels, never the recorded ones.
#pragma once
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

Tensor labels_to_int32(const Tensor& labels, const char* op);  // int32 / int64 in, values already checked
Tensor labels_to_float32(const Tensor& labels, const char* op);  // float32 / float16 in

}  // namespace metalnn::cuda

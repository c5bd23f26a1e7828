// CPU convolution kernels. float32 (and float16 with float accumulation, widened per
// image) runs im2col + sgemm per image and group; half accumulation runs plain loops.
// The forward runs f per output row right after the image's products.
#pragma once
#include "kernels/conv_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/conv.inc"

}  // namespace metalnn::cpu

// Neuron encoders (kernels in cpp/kernels/neuron.metal). Plain C++: ops/ calls these
// inside the Metal branch of dispatch().
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/neuron.inc"

}  // namespace metalnn::metal

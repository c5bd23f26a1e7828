// Normalization encoders (kernels in cpp/kernels/normalization.metal). Plain C++: ops/ calls
// these inside the Metal branch of dispatch().
#pragma once
#include "kernels/normalization_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/normalization.inc"

}  // namespace metalnn::metal

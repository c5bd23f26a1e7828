// The weight gradient's tile transforms (channels as lanes, channel-last planes) and the
// adjoint of the weight transform, instantiated in conv_winograd_tiles_cl.cpp for the
// tile sizes of conv_winograd_tiles.cpp; see Kernels for the layouts.
#pragma once
#include <cstdint>

#include "metalnn/backend/cpu/conv_winograd_tiles.h"

namespace metalnn::cpu::winograd {

template <int M, int R>
void input_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Cp, float* V);
template <int M, int R>
void output_adjoint_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Op, float* dM);
template <int M, int R>
void weights_adjoint(const float* dU, int64_t O, int64_t C, float* dw);

}  // namespace metalnn::cpu::winograd

// Shared by the tiled GEMM encoders (conv.metal, linear.metal): the kernels fix a 16x16
// threadgroup that computes a 32x32 output tile (mnn_gemm_tile in metal_common.h).
#pragma once
#include <cstddef>

#include "metalnn/backend/metal/extents.h"
#include "metalnn/backend/metal/kernel.h"
#include "kernels/neuron_params.h"

namespace metalnn::metal {

constexpr size_t kGemmTile = 32;     // output rows/columns per threadgroup
constexpr size_t kGemmThreads = 16;  // threadgroup is kGemmThreads x kGemmThreads

// Grid of ceil(cols / 32) x ceil(rows / 32) x depth threadgroups of 16 x 16 threads.
inline void gemm_groups(KernelCall& k, const char* op, int64_t rows, int64_t cols, int64_t depth) {
  size_t r = checked_u32(op, "rows", rows), c = checked_u32(op, "columns", cols);
  k.groups((c + kGemmTile - 1) / kGemmTile, (r + kGemmTile - 1) / kGemmTile, (size_t)depth, kGemmThreads,
           kGemmThreads);
}

// Binds a layer forward's buffers (conv2d_forward, fully_connected_forward): x 0, w 1,
// bias 2, y 3, pre 4, params 5, neuron 6, store_pre 7. A missing bias or pre binds x: the
// kernel never touches them.
template <class Params>
void bind_layer_forward(KernelCall& k, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                        const Params& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  const uint32_t store_pre = pre.defined() ? 1u : 0u;
  k.buffer(0, x, Access::read).buffer(1, w, Access::read);
  k.buffer(2, p.has_bias && bias.defined() ? bias : x, Access::read);
  k.buffer(3, y, Access::write);
  if (store_pre) k.buffer(4, pre, Access::write);
  else k.buffer(4, x, Access::read);
  k.bytes(5, p).bytes(6, neuron).bytes(7, store_pre);
}

}  // namespace metalnn::metal

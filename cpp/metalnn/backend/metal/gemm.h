// Shared by the tiled GEMM encoders (conv.metal, linear.metal): the kernels fix a 16x16
// threadgroup that computes a 32x32 output tile (mnn_gemm_tile in metal_common.h).
#pragma once
#include <cstddef>

#include "metalnn/backend/metal/extents.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

constexpr size_t kGemmTile = 32;     // output rows/columns per threadgroup
constexpr size_t kGemmThreads = 16;  // threadgroup is kGemmThreads x kGemmThreads

// Grid of ceil(cols / 32) x ceil(rows / 32) x depth threadgroups of 16 x 16 threads.
inline void gemm_groups(KernelCall& k, const char* op, int64_t rows, int64_t cols, int64_t depth) {
  size_t r = checked_u32(op, "rows", rows), c = checked_u32(op, "columns", cols);
  k.groups((c + kGemmTile - 1) / kGemmTile, (r + kGemmTile - 1) / kGemmTile, (size_t)depth, kGemmThreads,
           kGemmThreads);
}

}  // namespace metalnn::metal

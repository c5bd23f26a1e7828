// How a Winograd convolution is cut into blocks of tile rows (shared by the path choice
// and the kernels), and which tile size and block size each direction uses.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/conv_params.h"
#include "metalnn/backend/cpu/conv_winograd_tiles.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu::winograd {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The GEMM's widest register panel (4 vectors), so lanes never end in a partial panel.
#if defined(__AVX512F__)
inline constexpr int64_t kLaneMultiple = 64;
#else
inline constexpr int64_t kLaneMultiple = 32;
#endif

// Tile rows per block: little lane padding and few idle threads (both count as wasted lanes:
// batch 1 with 2 threads is better as one block of 16 tiles than two of 8 padded to 32 lanes
// each), near `target` tiles; on equal waste, fewer blocks (less work in total).
struct BlockPlan {
  int64_t rows_total, rows_per_block, blocks, lanes;
  BlockPlan(const Geometry& g, int64_t images, int64_t target) {
    rows_total = images * g.th;
    const int64_t threads = num_threads();
    double best = 1e30;
    rows_per_block = 1;
    for (int64_t rb = 1; rb <= rows_total; ++rb) {
      const int64_t tiles = rb * g.tw;
      if (rb > 1 && tiles > 2 * target) break;
      const int64_t n = ceil_div(rows_total, rb), waves = ceil_div(n, threads);
      const double used = (double)waves * threads * ceil_div(tiles, kLaneMultiple) * kLaneMultiple;
      const double waste = used / (double)(rows_total * g.tw);
      const double score = waste * (1.0 + 0.1 * std::fabs(std::log2((double)tiles / target)));
      if (score <= best * (1.0 + 1e-9)) best = std::min(best, score), rows_per_block = rb;
    }
    blocks = ceil_div(rows_total, rows_per_block);
    lanes = ceil_div(rows_per_block * g.tw, kLaneMultiple) * kLaneMultiple;
  }
  TileBlock block(const Geometry& g, int64_t b) const {
    const int64_t first = b * rows_per_block;
    return TileBlock{first, std::min(rows_per_block, rows_total - first), g.tw, g.th, lanes};
  }
};

// The convolution p as the transforms of kernels k see it.
inline Geometry geometry(const MnnConv2dParams& p, const Kernels& k) {
  return Geometry{p.in_channels, p.out_channels, ceil_div(p.out_height, k.m), ceil_div(p.out_width, k.m), k.m, k.r};
}

enum class Direction { forward, weight };

// Tiles per block: the weight gradient's products are summed over tiles (longer is better).
inline int64_t target_tiles(Direction dir) { return dir == Direction::weight ? 256 : 128; }

// The tile size (kernels) the time model picks for this convolution and direction.
const Kernels& pick(const MnnConv2dParams& p, Direction dir);

}  // namespace metalnn::cpu::winograd

// Whether a convolution runs Winograd: METALNN_CONV_ALGO, the supported geometry, and a
// time model of both paths.
#include <cstdlib>
#include <cstring>

#include "metalnn/backend/cpu/conv_winograd.h"
#include "metalnn/backend/cpu/conv_winograd_plan.h"
#include "metalnn/core/error.h"

namespace metalnn::cpu {
namespace {

using namespace winograd;

enum class Algo { automatic, im2col, winograd };

// Read per call (before anything is written), so tests and benchmarks can switch paths
// inside one process; a misspelt value raises rather than silently measuring `auto`.
Algo algo_from_env() {
  const char* v = std::getenv("METALNN_CONV_ALGO");
  if (!v || !*v || !std::strcmp(v, "auto")) return Algo::automatic;
  if (!std::strcmp(v, "im2col")) return Algo::im2col;
  if (!std::strcmp(v, "winograd")) return Algo::winograd;
  fail(ErrorKind::Value, "conv2d", "METALNN_CONV_ALGO must be auto, im2col or winograd, got '", v, "'");
}

bool supported(const MnnConv2dParams& p) {
  return p.stride_y == 1 && p.stride_x == 1 && p.dilation_y == 1 && p.dilation_x == 1 && p.groups == 1 &&
         p.accumulation == MNN_ACCUMULATE_FLOAT && p.kernel_height == p.kernel_width &&
         (p.kernel_height == 3 || p.kernel_height == 5) && p.out_height > 0 && p.out_width > 0;
}

// Which path runs, from a time model fitted to single-thread measurements of both paths
// on Zen 4 (14 layer shapes, within ~25%; see benchmarks/results/cpu_2026-11-26b.md):
// milliseconds per unit of
//  im2col:   product flops, im2col elements (N*P*K), outputs (N*P*O), images;
//  Winograd: product flops, transformed inputs (lanes*alpha^2*C) and outputs (.. *O), images,
// where lanes counts the padded tile lanes. The weight gradient has its own fit: its
// operands are channel-last, channels padded to whole vectors (Cp, Op), no lane padding.

double im2col_ms(const MnnConv2dParams& p, Direction dir) {
  const double N = p.batch, P = (double)p.out_height * p.out_width, O = p.out_channels;
  const double K = (double)p.in_channels * p.kernel_height * p.kernel_width;
  if (dir == Direction::weight) return 8.4e-9 * 2.0 * N * P * O * K + 5.2e-7 * N * P * K;
  return 1.12e-8 * 2.0 * N * P * O * K + 3.3e-8 * N * P * K + 3.1e-8 * N * P * O + 4.3e-3 * N;
}

double winograd_ms(const MnnConv2dParams& p, const Kernels& k, Direction dir) {
  const Geometry g = geometry(p, k);
  const double a2 = (double)k.alpha * k.alpha, C = g.C, O = g.O, N = p.batch;
  if (dir == Direction::weight) {
    const double T = N * g.th * g.tw * a2, Cp = (double)winograd::channel_pad(g.C);
    return 1.74e-8 * 2.0 * T * O * Cp + 5.7e-7 * T * Cp;
  }
  const BlockPlan bp(g, p.batch, target_tiles(dir));
  const double L = (double)bp.blocks * bp.lanes * a2;
  return 1.03e-8 * 2.0 * L * O * C + 4.26e-7 * L * C + 3.14e-7 * L * O + 2.8e-3 * N;
}

// The cheapest tile size built for this kernel size (smaller alpha on near ties: less rounding).
const Kernels* cheapest(const MnnConv2dParams& p, Direction dir) {
  const Kernels* best = nullptr;
  double best_cost = 0.0;
  for (int m : {2, 4, 6}) {
    const Kernels* k = winograd::kernels_for(m, p.kernel_height);
    if (!k) continue;
    const double c = winograd_ms(p, *k, dir);
    if (!best || c < best_cost * 0.98) best = k, best_cost = c;
  }
  return best;
}

bool choose(const MnnConv2dParams& p, Direction dir) {
  const Algo algo = algo_from_env();
  if (!supported(p)) return false;
  switch (algo) {
    case Algo::im2col: return false;
    case Algo::winograd: return true;
    default: break;
  }
  // The weight gradient's channel-last lanes are mostly padding below 8 input channels
  // (the fit above does not cover that; measured slower on AVX-512 and SSE2 builds).
  if (dir == Direction::weight && p.in_channels < 8) return false;
  return winograd_ms(p, *cheapest(p, dir), dir) < im2col_ms(p, dir);
}

}  // namespace

const Kernels& winograd::pick(const MnnConv2dParams& p, Direction dir) { return *cheapest(p, dir); }

bool winograd_for_forward(const MnnConv2dParams& p) { return choose(p, Direction::forward); }

bool winograd_for_weight(const MnnConv2dParams& p) { return choose(p, Direction::weight); }

}  // namespace metalnn::cpu

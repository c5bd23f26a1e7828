#include "metalnn/backend/cpu/conv_winograd_tiles.h"

#include <algorithm>
#include <vector>

#include "metalnn/backend/cpu/conv_winograd_apply.h"
#include "metalnn/backend/cpu/conv_winograd_tiles_cl.h"
#include "metalnn/backend/cpu/conv_winograd_transpose.h"

namespace metalnn::cpu::winograd {
namespace {

static_assert(construction_error<4, 5>() < 1e-12 && construction_error<2, 5>() < 1e-12);
static_assert(construction_error<6, 3>() < 1e-12 && construction_error<4, 3>() < 1e-12 &&
              construction_error<2, 3>() < 1e-12);

// With the filters as lanes (n of them, stored gT[q * ld + lane], q = kh * R + kw):
// U[xi * stride + lane] = (G g G^T)[xi].
template <int M, int R>
void filter_lanes(const float* gT, int64_t ld, int64_t n, int64_t stride, float* U) {
  constexpr int A = M + R - 1;
  for (int64_t l = 0; l < n; l += VW) {
    sandwich<A, R, kRows>(
        G<M, R>{}, [&](int kh, int kw) { return load(gT + (kh * R + kw) * ld + l); },
        [&](int i, int j, vf v) { store(U + (i * A + j) * stride + l, v); });
  }
}

template <int M, int R>
void weights(const float* w, int64_t O, int64_t C, bool flip, int mr, int64_t stride, float* U) {
  // The filters in packed order as lanes: lane (o / mr) * mr * C + c * mr + o % mr.
  const int64_t n = (O + mr - 1) / mr * mr * C, ld = (n + VW - 1) / VW * VW;
  thread_local std::vector<float> gT;
  gT.assign((size_t)(R * R * ld), 0.f);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t lane = o / mr * mr * C + c * mr + o % mr;
      const float* src = flip ? w + (c * O + o) * R * R : w + (o * C + c) * R * R;
      for (int q = 0; q < R * R; ++q) gT[(size_t)(q * ld + lane)] = flip ? src[R * R - 1 - q] : src[q];
    }
  filter_lanes<M, R>(gT.data(), ld, ld, stride, U);
}

// V = B^T d B with the tiles as lanes. Per channel and 8 tiles: each window row is loaded,
// transposed in registers and transformed along the row (d B) right away, staged as
// stage[(k * A + j) * S + t]; then B^T (.) down the rows, VW tiles at a time.
template <int M, int R>
void input(const Geometry& g, const TileBlock& b, const float* const* images, float* V, float* stage) {
  using T = F<M, R>;
  constexpr int A = T::A;
  const int64_t L = b.lanes, S = b.stage_stride(), X = b.xi_stride(g.C), nt = b.count();
  const int64_t W = g.in_w(), plane = g.in_h() * W;
  const TilePos* pos = tile_positions(g, b, M);
  // Tiles past the block repeat its last one up to a multiple of 8 (their lanes are never
  // read back); lanes from there on stay zero.
  const int64_t n8 = (nt + 7) / 8 * 8;
  for (int64_t e = 0; e < A * A; ++e) std::fill(stage + e * S + std::min(n8, L), stage + e * S + L, 0.f);
  thread_local std::vector<const float*> base;
  base.resize((size_t)n8);
  for (int64_t t = 0; t < n8; ++t) {
    const TilePos& p = pos[std::min(t, nt - 1)];
    base[(size_t)t] = images[p.image] + p.oy * W + p.ox;
  }
  for (int64_t c = 0; c < g.C; ++c) {
#if defined(__AVX__)
    for (int64_t t = 0; t < n8; t += 8) {
#pragma GCC unroll 8
      for (int k = 0; k < A; ++k) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(base[(size_t)(t + j)] + c * plane + k * W);
        transpose8(r);
        vf8 d[A], row[A];
#pragma GCC unroll 8
        for (int kk = 0; kk < A; ++kk) std::memcpy(&d[kk], &r[kk], sizeof(vf8));
        apply<A, A, kRows>(BT<M, R>{}, d, row);
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) std::memcpy(stage + (k * A + j) * S + t, &row[j], sizeof(vf8));
      }
    }
#else
    for (int64_t t = 0; t < n8; ++t) {
      const float* src = base[(size_t)t] + c * plane;
      for (int k = 0; k < A; ++k) {
        float d[A], row[A];
        for (int kk = 0; kk < A; ++kk) d[kk] = src[k * W + kk];
        for (int j = 0; j < A; ++j) {
          float sum = 0.f;
          for (int kk = 0; kk < A; ++kk) sum += BT<M, R>{}(j, kk) * d[kk];
          row[j] = sum;
        }
        for (int j = 0; j < A; ++j) stage[(k * A + j) * S + t] = row[j];
      }
    }
#endif
    for (int64_t l = 0; l < L; l += VW) {
#pragma GCC unroll 8
      for (int j = 0; j < A; ++j) {
        vf d[A], col[A];
#pragma GCC unroll 8
        for (int k = 0; k < A; ++k) d[k] = load(stage + (k * A + j) * S + l);
        apply<A, A, kRows>(BT<M, R>{}, d, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) store(V + (i * A + j) * X + c * L + l, col[i]);
      }
    }
  }
}

// y = A^T Mtile A per output channel, tiles as lanes, then scattered into the planes.
template <int M, int R>
void output(const Geometry& g, const TileBlock& b, const float* Mb, float* const* images) {
  using T = F<M, R>;
  constexpr int A = T::A;
  const int64_t L = b.lanes, X = b.xi_stride(g.O), nt = b.count(), W = g.out_w(), plane = g.out_h() * W;
  const TilePos* pos = tile_positions(g, b, M);
  for (int64_t o = 0; o < g.O; ++o) {
    for (int64_t l = 0; l < nt; l += VW) {
      alignas(64) float res[M][M][VW];
      sandwich<M, A, kCols>(
          AT<M, R>{}, [&](int i, int j) { return load(Mb + (i * A + j) * X + o * L + l); },
          [&](int a, int bb, vf v) { store(res[a][bb], v); });
      const int64_t lanes = std::min<int64_t>(VW, nt - l);
      for (int64_t v = 0; v < lanes; ++v) {
        const TilePos& p = pos[l + v];
        float* dst = images[p.image] + o * plane + p.oy * W + p.ox;
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a)
#pragma GCC unroll 8
          for (int bb = 0; bb < M; ++bb) dst[a * W + bb] = res[a][bb][v];
      }
    }
  }
}

template <int M, int R>
constexpr Kernels make_kernels() {
  constexpr int A = M + R - 1;
  static_assert(pairs_mirror<A, A, kRows>(BT<M, R>{}) && pairs_mirror<M, A, kCols>(AT<M, R>{}) &&
                pairs_mirror<A, M, kRows>(AM<M, R>{}) && pairs_mirror<A, R, kRows>(G<M, R>{}) &&
                pairs_mirror<R, A, kCols>(GT<M, R>{}));
  return Kernels{M, R, M + R - 1, weights<M, R>, input<M, R>, output<M, R>, input_cl<M, R>,
                 output_adjoint_cl<M, R>, weights_adjoint<M, R>};
}

// F(4x4, 5x5) and F(2x2, 5x5); F(6x6, 3x3), F(4x4, 3x3), F(2x2, 3x3).
constexpr Kernels kAll[] = {make_kernels<4, 5>(), make_kernels<2, 5>(), make_kernels<6, 3>(),
                            make_kernels<4, 3>(), make_kernels<2, 3>()};

}  // namespace

const Kernels* kernels_for(int m, int r) {
  for (const Kernels& k : kAll)
    if (k.m == m && k.r == r) return &k;
  return nullptr;
}

int64_t channel_pad(int64_t channels) { return (channels + VW - 1) / VW * VW; }

int64_t weights_panel_size(int64_t O, int64_t C, int mr) { return ((O + mr - 1) / mr * mr * C + VW - 1) / VW * VW; }

int64_t stage_size(const Kernels& k, const TileBlock& b) { return (int64_t)k.alpha * k.alpha * b.stage_stride(); }

int64_t transformed_size(const Kernels& k, const TileBlock& b, int64_t channels) {
  return (int64_t)k.alpha * k.alpha * b.xi_stride(channels);
}

}  // namespace metalnn::cpu::winograd

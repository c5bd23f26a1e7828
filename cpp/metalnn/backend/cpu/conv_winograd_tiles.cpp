#include "metalnn/backend/cpu/conv_winograd_tiles.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "metalnn/backend/cpu/conv_winograd_matrices.h"

namespace metalnn::cpu::winograd {
namespace {

static_assert(construction_error<4, 5>() < 1e-12 && construction_error<2, 5>() < 1e-12);
static_assert(construction_error<6, 3>() < 1e-12 && construction_error<4, 3>() < 1e-12 &&
              construction_error<2, 3>() < 1e-12);

#if defined(__AVX512F__)
constexpr int VW = 16;
#elif defined(__AVX__)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }

// The matrices in float, as compile-time constants: after unrolling, zero entries drop out.
template <int M, int R>
struct F {
  static constexpr int A = M + R - 1;
  static constexpr Matrices<M, R> d = make_matrices<M, R>();
};
// The matrices as functors (compile-time calls in `apply`): B^T, A^T and A.
template <int M, int R>
struct BT {
  constexpr float operator()(int i, int k) const { return (float)F<M, R>::d.BT[i][k]; }
};
template <int M, int R>
struct AT {
  constexpr float operator()(int a, int i) const { return (float)F<M, R>::d.AT[a][i]; }
};
template <int M, int R>
struct AM {
  constexpr float operator()(int i, int a) const { return (float)F<M, R>::d.AT[a][i]; }
};

// out[i] = sum_k Mat(i, k) * in[k] for the rows of a compile-time matrix.
template <int ROWS, int COLS, typename Mat>
inline void apply(Mat mat, const vf* in, vf* out) {
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    vf s = vf{};
#pragma GCC unroll 8
    for (int k = 0; k < COLS; ++k)
      if (mat(i, k) != 0.f) s += mat(i, k) * in[k];
    out[i] = s;
  }
}

// Where tile t of a block lies: its image (relative to the block's first), and the top-left
// output position of the tile.
struct TilePos {
  int32_t image, oy, ox;
};
const TilePos* tile_positions(const Geometry& g, const TileBlock& b, int M) {
  thread_local std::vector<TilePos> pos;
  pos.resize((size_t)b.count());
  const int64_t n0 = b.first_image();
  for (int64_t t = 0; t < b.count(); ++t) {
    const int64_t row = b.first_row + t / g.tw;
    pos[(size_t)t] = {(int32_t)(row / g.th - n0), (int32_t)(row % g.th * M), (int32_t)(t % g.tw * M)};
  }
  return pos.data();
}

template <int M, int R>
void weights(const float* w, int64_t O, int64_t C, bool flip, float* U) {
  using T = F<M, R>;
  constexpr int A = T::A;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c) {
      double g[R][R], tmp[A][R];
      for (int kh = 0; kh < R; ++kh)
        for (int kw = 0; kw < R; ++kw)
          g[kh][kw] = flip ? w[((c * O + o) * R + (R - 1 - kh)) * R + (R - 1 - kw)] : w[((o * C + c) * R + kh) * R + kw];
      for (int i = 0; i < A; ++i)
        for (int kw = 0; kw < R; ++kw) {
          double s = 0.0;
          for (int kh = 0; kh < R; ++kh) s += T::d.G[i][kh] * g[kh][kw];
          tmp[i][kw] = s;
        }
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
          double s = 0.0;
          for (int kw = 0; kw < R; ++kw) s += tmp[i][kw] * T::d.G[j][kw];
          U[((i * A + j) * O + o) * C + c] = (float)s;
        }
    }
}

template <int M, int R>
void weights_adjoint(const float* dU, int64_t O, int64_t C, float* dw) {
  using T = F<M, R>;
  constexpr int A = T::A;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c) {
      double tmp[R][A];  // tmp[kh][j] = sum_i G[i][kh] dU[i][j]
      for (int kh = 0; kh < R; ++kh)
        for (int j = 0; j < A; ++j) {
          double s = 0.0;
          for (int i = 0; i < A; ++i) s += T::d.G[i][kh] * dU[((i * A + j) * O + o) * C + c];
          tmp[kh][j] = s;
        }
      for (int kh = 0; kh < R; ++kh)
        for (int kw = 0; kw < R; ++kw) {
          double s = 0.0;
          for (int j = 0; j < A; ++j) s += tmp[kh][j] * T::d.G[j][kw];
          dw[((o * C + c) * R + kh) * R + kw] = (float)s;
        }
    }
}

// Per channel: gather the block's alpha x alpha input windows into stage[(k * A + kk) * lanes + t],
// then V = B^T d B with the tiles as lanes.
template <int M, int R>
void input(const Geometry& g, const TileBlock& b, const float* const* images, float* V, float* stage) {
  using T = F<M, R>;
  constexpr int A = T::A;
  const int64_t L = b.lanes, S = b.stage_stride(), X = b.xi_stride(g.C), nt = b.count();
  const int64_t W = g.in_w(), plane = g.in_h() * W;
  const TilePos* pos = tile_positions(g, b, M);
  for (int64_t e = 0; e < A * A; ++e) std::fill(stage + e * S + nt, stage + e * S + L, 0.f);
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t t = 0; t < nt; ++t) {
      const float* src = images[pos[t].image] + c * plane + pos[t].oy * W + pos[t].ox;
      float* dst = stage + t;
#pragma GCC unroll 8
      for (int k = 0; k < A; ++k)
#pragma GCC unroll 8
        for (int kk = 0; kk < A; ++kk) dst[(k * A + kk) * S] = src[k * W + kk];
    }
    for (int64_t l = 0; l < L; l += VW) {
      vf tmp[A][A];  // tmp[i][kk] = sum_k BT[i][k] d[k][kk]
#pragma GCC unroll 8
      for (int kk = 0; kk < A; ++kk) {
        vf d[A], col[A];
#pragma GCC unroll 8
        for (int k = 0; k < A; ++k) d[k] = load(stage + (k * A + kk) * S + l);
        apply<A, A>(BT<M, R>{}, d, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) tmp[i][kk] = col[i];
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        vf row[A];
        apply<A, A>(BT<M, R>{}, tmp[i], row);
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) store(V + (i * A + j) * X + c * L + l, row[j]);
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
      vf tmp[M][A];  // tmp[a][j] = sum_i AT[a][i] m[i][j]
#pragma GCC unroll 8
      for (int j = 0; j < A; ++j) {
        vf m[A], col[M];
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) m[i] = load(Mb + (i * A + j) * X + o * L + l);
        apply<M, A>(AT<M, R>{}, m, col);
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a) tmp[a][j] = col[a];
      }
      alignas(64) float res[M][M][VW];
#pragma GCC unroll 8
      for (int a = 0; a < M; ++a) {
        vf row[M];
        apply<M, A>(AT<M, R>{}, tmp[a], row);
#pragma GCC unroll 8
        for (int bb = 0; bb < M; ++bb) store(res[a][bb], row[bb]);
      }
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

// dM = A dy A^T per output channel, tiles as lanes.
template <int M, int R>
void output_adjoint(const Geometry& g, const TileBlock& b, const float* const* images, float* dM, float* stage) {
  using T = F<M, R>;
  constexpr int A = T::A;
  const int64_t L = b.lanes, S = b.stage_stride(), X = b.xi_stride(g.O), nt = b.count();
  const int64_t W = g.out_w(), plane = g.out_h() * W;
  const TilePos* pos = tile_positions(g, b, M);
  for (int64_t e = 0; e < M * M; ++e) std::fill(stage + e * S + nt, stage + e * S + L, 0.f);
  for (int64_t o = 0; o < g.O; ++o) {
    for (int64_t t = 0; t < nt; ++t) {
      const TilePos& p = pos[t];
      const float* src = images[p.image] + o * plane + p.oy * W + p.ox;
      float* dst = stage + t;
#pragma GCC unroll 8
      for (int a = 0; a < M; ++a)
#pragma GCC unroll 8
        for (int bb = 0; bb < M; ++bb) dst[(a * M + bb) * S] = src[a * W + bb];
    }
    for (int64_t l = 0; l < L; l += VW) {
      vf tmp[A][M];  // tmp[i][bb] = sum_a AT[a][i] e[a][bb]
#pragma GCC unroll 8
      for (int bb = 0; bb < M; ++bb) {
        vf e[M], col[A];
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a) e[a] = load(stage + (a * M + bb) * S + l);
        apply<A, M>(AM<M, R>{}, e, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) tmp[i][bb] = col[i];
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        vf row[A];
        apply<A, M>(AM<M, R>{}, tmp[i], row);
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) store(dM + (i * A + j) * X + o * L + l, row[j]);
      }
    }
  }
}

template <int M, int R>
constexpr Kernels make_kernels() {
  return Kernels{M, R, M + R - 1, weights<M, R>, input<M, R>, output<M, R>, output_adjoint<M, R>,
                 weights_adjoint<M, R>};
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

int64_t stage_size(const Kernels& k, const TileBlock& b) { return (int64_t)k.alpha * k.alpha * b.stage_stride(); }

int64_t transformed_size(const Kernels& k, const TileBlock& b, int64_t channels) {
  return (int64_t)k.alpha * k.alpha * b.xi_stride(channels);
}

}  // namespace metalnn::cpu::winograd

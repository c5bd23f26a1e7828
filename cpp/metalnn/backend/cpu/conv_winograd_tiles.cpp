#include "metalnn/backend/cpu/conv_winograd_tiles.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "metalnn/backend/cpu/conv_winograd_matrices.h"

#include "metalnn/backend/cpu/conv_winograd_transpose.h"

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

// out[i] = sum_k Mat(i, k) * in[k] for a compile-time matrix whose rows (kRows) or columns
// (kCols) are the points 0, p1, -p1, p2, -p2, ..., infinity. The entries of a +-p pair differ
// only in sign by the parity of the other index (checked below), so a pair costs one
// even and one odd sum: about half the multiplies.
enum Pairs { kRows, kCols };

template <int ROWS, int COLS, Pairs P, typename Mat>
inline void apply(Mat mat, const vf* in, vf* out) {
  constexpr int N = P == kRows ? ROWS : COLS;  // the points' axis
  auto first_of_pair = [](int i) { return i % 2 == 1 && i + 1 < N - 1; };
  if constexpr (P == kRows) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      if (i % 2 == 0 && i > 0 && i < N - 1) continue;  // second of a pair: done with the first
      vf even = vf{}, odd = vf{};
#pragma GCC unroll 8
      for (int k = 0; k < COLS; ++k)
        if (mat(i, k) != 0.f) (k % 2 ? odd : even) += mat(i, k) * in[k];
      out[i] = even + odd;
      if (first_of_pair(i)) out[i + 1] = even - odd;
    }
  } else {
    vf sum[COLS], diff[COLS];
#pragma GCC unroll 8
    for (int k = 1; k < COLS; k += 2)
      if (first_of_pair(k)) sum[k] = in[k] + in[k + 1], diff[k] = in[k] - in[k + 1];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      vf s = vf{};
#pragma GCC unroll 8
      for (int k = 0; k < COLS; ++k) {
        if (mat(r, k) == 0.f) continue;
        if (first_of_pair(k)) s += mat(r, k) * (r % 2 ? diff[k] : sum[k]);
        else if (k % 2 == 0 && k > 0 && k < N - 1) continue;  // second of a pair
        else s += mat(r, k) * in[k];
      }
      out[r] = s;
    }
  }
}

// The pairing `apply` relies on: entries of the point -p equal those of p times (-1)^(other index).
template <int ROWS, int COLS, Pairs P, typename Mat>
constexpr bool pairs_mirror(Mat mat) {
  constexpr int N = P == kRows ? ROWS : COLS;
  for (int i = 1; i + 1 < N - 1; i += 2)
    for (int k = 0; k < (P == kRows ? COLS : ROWS); ++k) {
      const double a = P == kRows ? mat(i, k) : mat(k, i), b = P == kRows ? mat(i + 1, k) : mat(k, i + 1);
      const double want = k % 2 ? -a : a;
      if (absd(b - want) > 1e-6 * (absd(a) + 1e-30)) return false;
    }
  return true;
}


// stage[(k * A + kk) * S + t] = src_t[k * W + kk] for the tiles t in [t0, t1), src_t = base[t] + offset.
template <int A>
inline void gather_windows(const float* const* base, int64_t offset, int64_t W, int64_t S, int64_t t0, int64_t t1,
                           float* stage) {
  int64_t t = t0;
#if defined(__AVX__)
  // Eight tiles at a time: one 8-float load per tile and row, transposed in registers.
  for (; t + 8 <= t1; t += 8) {
#pragma GCC unroll 8
    for (int k = 0; k < A; ++k) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(base[t + j] + offset + k * W);
      transpose8(r);
#pragma GCC unroll 8
      for (int kk = 0; kk < A; ++kk) _mm256_storeu_ps(stage + (k * A + kk) * S + t, r[kk]);
    }
  }
#endif
  for (; t < t1; ++t) {
    const float* src = base[t] + offset;
#pragma GCC unroll 8
    for (int k = 0; k < A; ++k)
#pragma GCC unroll 8
      for (int kk = 0; kk < A; ++kk) stage[(k * A + kk) * S + t] = src[k * W + kk];
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
struct G {
  constexpr float operator()(int i, int k) const { return (float)F<M, R>::d.G[i][k]; }
};
template <int M, int R>
struct GT {
  constexpr float operator()(int k, int i) const { return (float)F<M, R>::d.G[i][k]; }
};

// With the filters as lanes (n of them, stored gT[q * ld + lane], q = kh * R + kw):
// U[xi * stride + lane] = (G g G^T)[xi].
template <int M, int R>
void filter_lanes(const float* gT, int64_t ld, int64_t n, int64_t stride, float* U) {
  constexpr int A = M + R - 1;
  for (int64_t l = 0; l < n; l += VW) {
    vf tmp[A][R];
#pragma GCC unroll 8
    for (int kw = 0; kw < R; ++kw) {
      vf col[R], out[A];
#pragma GCC unroll 8
      for (int kh = 0; kh < R; ++kh) col[kh] = load(gT + (kh * R + kw) * ld + l);
      apply<A, R, kRows>(G<M, R>{}, col, out);
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) tmp[i][kw] = out[i];
    }
#pragma GCC unroll 8
    for (int i = 0; i < A; ++i) {
      vf row[A];
      apply<A, R, kRows>(G<M, R>{}, tmp[i], row);
#pragma GCC unroll 8
      for (int j = 0; j < A; ++j) store(U + (i * A + j) * stride + l, row[j]);
    }
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

template <int M, int R>
void weights_adjoint(const float* dU, int64_t O, int64_t C, float* dw) {
  constexpr int A = M + R - 1;
  // dw = G^T dU G with the (o, c) pairs as lanes, then transposed into (O, C, R, R).
  const int64_t n = O * C, ld = (n + VW - 1) / VW * VW;
  thread_local std::vector<float> out;
  out.resize((size_t)(R * R * ld));
  for (int64_t l = 0; l < n; l += VW) {
    vf tmp[R][A];
    const int64_t lanes = std::min<int64_t>(VW, n - l);
#pragma GCC unroll 8
    for (int j = 0; j < A; ++j) {
      vf col[A], res[R];
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        alignas(64) float v[VW] = {};
        std::memcpy(v, dU + (i * A + j) * n + l, sizeof(float) * (size_t)lanes);
        col[i] = load(v);
      }
      apply<R, A, kCols>(GT<M, R>{}, col, res);
#pragma GCC unroll 8
      for (int kh = 0; kh < R; ++kh) tmp[kh][j] = res[kh];
    }
#pragma GCC unroll 8
    for (int kh = 0; kh < R; ++kh) {
      vf row[R];
      apply<R, A, kCols>(GT<M, R>{}, tmp[kh], row);
#pragma GCC unroll 8
      for (int kw = 0; kw < R; ++kw) store(out.data() + (kh * R + kw) * ld + l, row[kw]);
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int q = 0; q < R * R; ++q) dw[i * R * R + q] = out[(size_t)(q * ld + i)];
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
  thread_local std::vector<const float*> base;
  base.resize((size_t)nt);
  for (int64_t t = 0; t < nt; ++t) base[(size_t)t] = images[pos[t].image] + pos[t].oy * W + pos[t].ox;
  for (int64_t c = 0; c < g.C; ++c) {
    gather_windows<A>(base.data(), c * plane, W, S, 0, nt, stage);
    for (int64_t l = 0; l < L; l += VW) {
      vf tmp[A][A];  // tmp[i][kk] = sum_k BT[i][k] d[k][kk]
#pragma GCC unroll 8
      for (int kk = 0; kk < A; ++kk) {
        vf d[A], col[A];
#pragma GCC unroll 8
        for (int k = 0; k < A; ++k) d[k] = load(stage + (k * A + kk) * S + l);
        apply<A, A, kRows>(BT<M, R>{}, d, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) tmp[i][kk] = col[i];
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        vf row[A];
        apply<A, A, kRows>(BT<M, R>{}, tmp[i], row);
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
        apply<M, A, kCols>(AT<M, R>{}, m, col);
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a) tmp[a][j] = col[a];
      }
      alignas(64) float res[M][M][VW];
#pragma GCC unroll 8
      for (int a = 0; a < M; ++a) {
        vf row[M];
        apply<M, A, kCols>(AT<M, R>{}, tmp[a], row);
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

// V = B^T d B with the channels as lanes, from channel-last input planes.
template <int M, int R>
void input_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Cp, float* V) {
  constexpr int A = M + R - 1;
  const int64_t W = g.in_w(), nt = b.count(), X = cl_stride(b, Cp);
  const TilePos* pos = tile_positions(g, b, M);
  for (int64_t t = 0; t < nt; ++t) {
    const float* src = images[pos[t].image] + (pos[t].oy * W + pos[t].ox) * Cp;
    for (int64_t c = 0; c < Cp; c += VW) {
      vf tmp[A][A];  // tmp[i][kk] = sum_k BT[i][k] d[k][kk]
#pragma GCC unroll 8
      for (int kk = 0; kk < A; ++kk) {
        vf d[A], col[A];
#pragma GCC unroll 8
        for (int k = 0; k < A; ++k) d[k] = load(src + (k * W + kk) * Cp + c);
        apply<A, A, kRows>(BT<M, R>{}, d, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) tmp[i][kk] = col[i];
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        vf row[A];
        apply<A, A, kRows>(BT<M, R>{}, tmp[i], row);
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) store(V + (i * A + j) * X + t * Cp + c, row[j]);
      }
    }
  }
}

// dM = A dy A^T with the output channels as lanes, from channel-last output-gradient planes.
template <int M, int R>
void output_adjoint_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Op, float* dM) {
  constexpr int A = M + R - 1;
  const int64_t W = g.out_w(), nt = b.count(), X = cl_stride(b, Op);
  const TilePos* pos = tile_positions(g, b, M);
  for (int64_t t = 0; t < nt; ++t) {
    const float* src = images[pos[t].image] + (pos[t].oy * W + pos[t].ox) * Op;
    for (int64_t o = 0; o < Op; o += VW) {
      vf tmp[A][M];  // tmp[i][bb] = sum_a AT[a][i] e[a][bb]
#pragma GCC unroll 8
      for (int bb = 0; bb < M; ++bb) {
        vf e[M], col[A];
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a) e[a] = load(src + (a * W + bb) * Op + o);
        apply<A, M, kRows>(AM<M, R>{}, e, col);
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i) tmp[i][bb] = col[i];
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i) {
        vf row[A];
        apply<A, M, kRows>(AM<M, R>{}, tmp[i], row);
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) store(dM + (i * A + j) * X + t * Op + o, row[j]);
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

#include "metalnn/backend/cpu/conv_winograd_tiles_cl.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "metalnn/backend/cpu/conv_winograd_apply.h"

namespace metalnn::cpu::winograd {

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

#define METALNN_WINOGRAD_CL(M, R)                                                                             \
  template void input_cl<M, R>(const Geometry&, const TileBlock&, const float* const*, int64_t, float*);      \
  template void output_adjoint_cl<M, R>(const Geometry&, const TileBlock&, const float* const*, int64_t,      \
                                        float*);                                                              \
  template void weights_adjoint<M, R>(const float*, int64_t, int64_t, float*);
METALNN_WINOGRAD_CL(4, 5)
METALNN_WINOGRAD_CL(2, 5)
METALNN_WINOGRAD_CL(6, 3)
METALNN_WINOGRAD_CL(4, 3)
METALNN_WINOGRAD_CL(2, 3)
#undef METALNN_WINOGRAD_CL

}  // namespace metalnn::cpu::winograd

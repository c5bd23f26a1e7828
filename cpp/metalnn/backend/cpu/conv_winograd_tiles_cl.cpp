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
    const int64_t lanes = std::min<int64_t>(VW, n - l);
    auto get = [&](int i, int j) {
      alignas(64) float v[VW] = {};
      std::memcpy(v, dU + (i * A + j) * n + l, sizeof(float) * (size_t)lanes);
      return load(v);
    };
    sandwich<R, A, kCols>(GT<M, R>{}, get,
                          [&](int kh, int kw, vf v) { store(out.data() + (kh * R + kw) * ld + l, v); });
  }
  for (int64_t i = 0; i < n; ++i)
    for (int q = 0; q < R * R; ++q) dw[i * R * R + q] = out[(size_t)(q * ld + i)];
}

// out = Mat d Mat^T per tile with the channels (Cp of them) as lanes: d the tile's IN x IN window
// of channel-last planes W wide, out[(i * A + j) * X + t * Cp + c].
template <int A, int IN, typename Mat>
void channel_lanes(Mat mat, const TilePos* pos, int64_t nt, const float* const* images, int64_t W, int64_t Cp,
                   int64_t X, float* out) {
  for (int64_t t = 0; t < nt; ++t) {
    const float* src = images[pos[t].image] + (pos[t].oy * W + pos[t].ox) * Cp;
    for (int64_t c = 0; c < Cp; c += VW)
      sandwich<A, IN, kRows>(
          mat, [&](int k, int kk) { return load(src + (k * W + kk) * Cp + c); },
          [&](int i, int j, vf v) { store(out + (i * A + j) * X + t * Cp + c, v); });
  }
}

// V = B^T d B with the channels as lanes, from channel-last input planes.
template <int M, int R>
void input_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Cp, float* V) {
  constexpr int A = M + R - 1;
  channel_lanes<A, A>(BT<M, R>{}, tile_positions(g, b, M), b.count(), images, g.in_w(), Cp, cl_stride(b, Cp), V);
}

// dM = A dy A^T with the output channels as lanes, from channel-last output-gradient planes.
template <int M, int R>
void output_adjoint_cl(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Op, float* dM) {
  constexpr int A = M + R - 1;
  channel_lanes<A, M>(AM<M, R>{}, tile_positions(g, b, M), b.count(), images, g.out_w(), Op, cl_stride(b, Op), dM);
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

// RNN kernels (single gate, LSTM, GRU, MGU; math in rnn_params.h and cpp/metalnn/backend/cpu/rnn.cpp).
// The host (cpp/metalnn/backend/metal/rnn.cpp) runs a layer as: one product for the input
// projections of every step, then per step the recurrent product(s) and a gate kernel; the
// gradient mirrors it backwards and ends in whole-sequence weight-gradient products. Working
// buffers are float32 (data and weights of float16 storage are widened first, results narrowed).
//
// Step kernels: one thread per (row b, unit j), 1-D grid of B*H threads rounded up (any
// threadgroup size); MnnRnnStepParams p gives the offsets of this step's slices.
//   rnn_single_forward_float32   gates [[0]] (rw), bias [[1]], hp [[2]], hn [[3]], y [[4]], lengths [[5]], p [[6]]
//   rnn_lstm_forward_float32     gates [[0]], bias [[1]], peep [[2]], hp [[3]], hn [[4]], cp [[5]], cn [[6]],
//                                y [[7]], lengths [[8]], p [[9]]
//   rnn_gated_forward1_float32   gates [[0]], bias [[1]], hp [[2]], rh [[3]], lengths [[4]], p [[5]]
//   rnn_gated_forward2_float32   gates [[0]], bias [[1]], hp [[2]], hn [[3]], y [[4]], lengths [[5]], p [[6]]
//   rnn_single_backward_float32  gates [[0]], dgates [[1]], dh [[2]], dy [[3]], dhp [[4]], lengths [[5]], p [[6]]
//   rnn_lstm_backward_float32    gates [[0]], dgates [[1]], dh [[2]], dc [[3]], dy [[4]], dhp [[5]], dcp [[6]],
//                                cp [[7]], cn [[8]], peep [[9]], lengths [[10]], p [[11]]
//   rnn_gated_backward1_float32  gates [[0]], dgates [[1]], dh [[2]], dy [[3]], hp [[4]], dhp [[5]], lengths [[6]],
//                                p [[7]]
//   rnn_gated_backward2_float32  gates [[0]], dgates [[1]], drh [[2]], hp [[3]], dhp [[4]], lengths [[5]], p [[6]]
// hp/cp/rh slices start at p.off_hp, hn/cn at p.off_hn, gates/dgates at p.off_gates, y/dy at p.off_y
// (row stride p.y_stride); dh, dc, dhp, dcp, drh are (B, H) from 0. lengths (int32, B) is read
// only when p.has_lengths, dy only when p.has_dy, peep only when p.peephole (bind any buffer else).
// Tiled product (threadgroup 16 x 16, grid (ceil(N/32)*16, ceil(M/32)*16), 32x32 output tiles, 4 KiB
// threadgroup memory declared inside): mnn_gemm_tile from metal_common.h with strided operands:
//   rnn_gemm_float32             a [[0]], b [[1]], c [[2]] (rw when beta != 0), MnnRnnGemmParams [[3]]
// Reductions, one thread per output element (1-D grid rounded up):
//   rnn_column_sums_float32      a [[0]] (rows, cols), out [[1]] (cols), MnnRnnReduceParams [[2]]   grid cols
//   rnn_peephole_backward_float32  dgates [[0]] (T, B, 4H), cp [[1]] (T, B, H), c_last [[2]] (B, H),
//                                dpeep [[3]] (3, H), MnnRnnReduceParams [[4]]                        grid H
// Copies, grid p.count: out[p.out_off + i] = in[p.in_off + i] (casts between storage types):
//   rnn_cast_widen_float16       in half [[0]], out float [[1]], MnnRnnReduceParams [[2]]
//   rnn_cast_narrow_float16      in float [[0]], out half [[1]], MnnRnnReduceParams [[2]]
//   rnn_copy_float32             in float [[0]], out float [[1]], MnnRnnReduceParams [[2]]
//   rnn_zero_float32             out float [[0]], MnnRnnReduceParams [[1]]   (out[p.out_off + i] = 0)
#include <metal_stdlib>
#include "metal_common.h"
#include "rnn_params.h"
using namespace metal;

inline bool rnn_active(device const int* lengths, constant MnnRnnStepParams& p, uint b) {
  return p.has_lengths == 0 || p.time < lengths[b];
}

inline float rnn_tanh(float x) { return tanh(x); }  // precise: the Metal build keeps fast math off

// ---------------------------------------------------------------- forward steps

kernel void rnn_single_forward_float32(device float* gates [[buffer(0)]], device const float* bias [[buffer(1)]],
                                       device const float* hp [[buffer(2)]], device float* hn [[buffer(3)]],
                                       device float* y [[buffer(4)]], device const int* lengths [[buffer(5)]],
                                       constant MnnRnnStepParams& p [[buffer(6)]],
                                       uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  device float* g = gates + p.off_gates + b * H;
  const uint yi = p.off_y + b * p.y_stride + j;
  if (!rnn_active(lengths, p, b)) {
    hn[p.off_hn + gid] = hp[p.off_hp + gid];
    y[yi] = 0.0f;
    g[j] = 0.0f;
    return;
  }
  const float a = g[j] + bias[j];
  float h;
  if (p.activation == MNN_RNN_RELU) h = a < 0.0f ? 0.0f : a;
  else if (p.activation == MNN_RNN_SIGMOID) h = mnn_sigmoid(a);
  else h = rnn_tanh(a);
  g[j] = h;
  hn[p.off_hn + gid] = h;
  y[yi] = h;
}

kernel void rnn_lstm_forward_float32(device float* gates [[buffer(0)]], device const float* bias [[buffer(1)]],
                                     device const float* peep [[buffer(2)]], device const float* hp [[buffer(3)]],
                                     device float* hn [[buffer(4)]], device const float* cp [[buffer(5)]],
                                     device float* cn [[buffer(6)]], device float* y [[buffer(7)]],
                                     device const int* lengths [[buffer(8)]],
                                     constant MnnRnnStepParams& p [[buffer(9)]], uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  device float* g = gates + p.off_gates + b * 4 * H;
  const uint yi = p.off_y + b * p.y_stride + j;
  const float c0 = cp[p.off_hp + gid];
  if (!rnn_active(lengths, p, b)) {
    hn[p.off_hn + gid] = hp[p.off_hp + gid];
    cn[p.off_hn + gid] = c0;
    y[yi] = 0.0f;
    for (uint k = 0; k < 4; ++k) g[k * H + j] = 0.0f;
    return;
  }
  float ai = g[j] + bias[j], af = g[H + j] + bias[H + j];
  if (p.peephole != 0) {
    ai += peep[j] * c0;
    af += peep[H + j] * c0;
  }
  const float i = mnn_sigmoid(ai), f = mnn_sigmoid(af);
  const float gg = rnn_tanh(g[2 * H + j] + bias[2 * H + j]);
  const float c = f * c0 + i * gg;
  float ao = g[3 * H + j] + bias[3 * H + j];
  if (p.peephole != 0) ao += peep[2 * H + j] * c;
  const float o = mnn_sigmoid(ao);
  const float h = o * rnn_tanh(c);
  g[j] = i;
  g[H + j] = f;
  g[2 * H + j] = gg;
  g[3 * H + j] = o;
  cn[p.off_hn + gid] = c;
  hn[p.off_hn + gid] = h;
  y[yi] = h;
}

// GRU/MGU after the gate product: sigmoid gates (all but the candidate), rh = gate0 * h_prev.
kernel void rnn_gated_forward1_float32(device float* gates [[buffer(0)]], device const float* bias [[buffer(1)]],
                                       device const float* hp [[buffer(2)]], device float* rh [[buffer(3)]],
                                       device const int* lengths [[buffer(4)]],
                                       constant MnnRnnStepParams& p [[buffer(5)]],
                                       uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden, G = p.gates;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  device float* g = gates + p.off_gates + b * G * H;
  if (!rnn_active(lengths, p, b)) {
    for (uint k = 0; k < G; ++k) g[k * H + j] = 0.0f;
    rh[p.off_hp + gid] = 0.0f;
    return;
  }
  for (uint k = 0; k + 1 < G; ++k) g[k * H + j] = mnn_sigmoid(g[k * H + j] + bias[k * H + j]);
  rh[p.off_hp + gid] = g[j] * hp[p.off_hp + gid];
}

// u: the weight of h_prev in the output mix (GRU z, MGU 1 - f; flipped: the other one).
inline float rnn_mix_weight(device const float* g, constant MnnRnnStepParams& p, uint j, thread float& sign) {
  const bool gru = p.cell == MNN_RNN_GRU, one_minus = gru == (p.flip_output_gates != 0);
  const float ug = g[(gru ? p.hidden : 0u) + j];
  sign = one_minus ? -1.0f : 1.0f;
  return one_minus ? 1.0f - ug : ug;
}

kernel void rnn_gated_forward2_float32(device float* gates [[buffer(0)]], device const float* bias [[buffer(1)]],
                                       device const float* hp [[buffer(2)]], device float* hn [[buffer(3)]],
                                       device float* y [[buffer(4)]], device const int* lengths [[buffer(5)]],
                                       constant MnnRnnStepParams& p [[buffer(6)]],
                                       uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden, G = p.gates, nsig = (G - 1) * H;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  device float* g = gates + p.off_gates + b * G * H;
  const uint yi = p.off_y + b * p.y_stride + j;
  const float h0 = hp[p.off_hp + gid];
  if (!rnn_active(lengths, p, b)) {
    hn[p.off_hn + gid] = h0;
    y[yi] = 0.0f;
    return;
  }
  float sign;
  const float u = rnn_mix_weight(g, p, j, sign);
  const float n = rnn_tanh(g[nsig + j] + bias[nsig + j]);
  const float h = u * h0 + (1.0f - u) * n;
  g[nsig + j] = n;
  hn[p.off_hn + gid] = h;
  y[yi] = h;
}

// ---------------------------------------------------------------- backward steps
// dh: dL/dh after the step (from later steps); dhp gets the part of dL/dh_prev that does not
// go through U (the host adds dgates U with a product afterwards).

inline float rnn_dy(device const float* dy, constant MnnRnnStepParams& p, uint b, uint j) {
  return p.has_dy != 0 ? dy[p.off_y + b * p.y_stride + j] : 0.0f;
}

kernel void rnn_single_backward_float32(device const float* gates [[buffer(0)]], device float* dgates [[buffer(1)]],
                                        device const float* dh [[buffer(2)]], device const float* dy [[buffer(3)]],
                                        device float* dhp [[buffer(4)]], device const int* lengths [[buffer(5)]],
                                        constant MnnRnnStepParams& p [[buffer(6)]],
                                        uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  const uint gi = p.off_gates + b * H + j;
  if (!rnn_active(lengths, p, b)) {
    dgates[gi] = 0.0f;
    dhp[gid] = dh[gid];
    return;
  }
  const float h = gates[gi];
  const float d = dh[gid] + rnn_dy(dy, p, b, j);
  float slope;
  if (p.activation == MNN_RNN_RELU) slope = h > 0.0f ? 1.0f : 0.0f;
  else if (p.activation == MNN_RNN_SIGMOID) slope = h * (1.0f - h);
  else slope = 1.0f - h * h;
  dgates[gi] = d * slope;
  dhp[gid] = 0.0f;
}

kernel void rnn_lstm_backward_float32(device const float* gates [[buffer(0)]], device float* dgates [[buffer(1)]],
                                      device const float* dh [[buffer(2)]], device const float* dc [[buffer(3)]],
                                      device const float* dy [[buffer(4)]], device float* dhp [[buffer(5)]],
                                      device float* dcp [[buffer(6)]], device const float* cp [[buffer(7)]],
                                      device const float* cn [[buffer(8)]], device const float* peep [[buffer(9)]],
                                      device const int* lengths [[buffer(10)]],
                                      constant MnnRnnStepParams& p [[buffer(11)]],
                                      uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  const uint row = p.off_gates + b * 4 * H;
  if (!rnn_active(lengths, p, b)) {
    for (uint k = 0; k < 4; ++k) dgates[row + k * H + j] = 0.0f;
    dhp[gid] = dh[gid];
    dcp[gid] = dc[gid];
    return;
  }
  const float i = gates[row + j], f = gates[row + H + j], gg = gates[row + 2 * H + j], o = gates[row + 3 * H + j];
  const float c0 = cp[p.off_hp + gid], c1 = cn[p.off_hn + gid];
  const float dht = dh[gid] + rnn_dy(dy, p, b, j);
  const float tc = rnn_tanh(c1);
  const float dao = dht * tc * o * (1.0f - o);
  float dct = dc[gid] + dht * o * (1.0f - tc * tc);
  if (p.peephole != 0) dct += dao * peep[2 * H + j];
  const float dai = dct * gg * i * (1.0f - i);
  const float daf = dct * c0 * f * (1.0f - f);
  const float dag = dct * i * (1.0f - gg * gg);
  float dcprev = dct * f;
  if (p.peephole != 0) dcprev += dai * peep[j] + daf * peep[H + j];
  dgates[row + j] = dai;
  dgates[row + H + j] = daf;
  dgates[row + 2 * H + j] = dag;
  dgates[row + 3 * H + j] = dao;
  dcp[gid] = dcprev;
  dhp[gid] = 0.0f;
}

// GRU/MGU part 1: candidate and output-mix gradients; raw (pre-slope) gate gradients.
kernel void rnn_gated_backward1_float32(device const float* gates [[buffer(0)]], device float* dgates [[buffer(1)]],
                                        device const float* dh [[buffer(2)]], device const float* dy [[buffer(3)]],
                                        device const float* hp [[buffer(4)]], device float* dhp [[buffer(5)]],
                                        device const int* lengths [[buffer(6)]],
                                        constant MnnRnnStepParams& p [[buffer(7)]],
                                        uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden, G = p.gates, nsig = (G - 1) * H;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  const uint row = p.off_gates + b * G * H;
  if (!rnn_active(lengths, p, b)) {
    for (uint k = 0; k < G; ++k) dgates[row + k * H + j] = 0.0f;
    dhp[gid] = dh[gid];
    return;
  }
  const bool gru = p.cell == MNN_RNN_GRU;
  float sign;
  const float u = rnn_mix_weight(gates + row, p, j, sign);
  const float n = gates[row + nsig + j];
  const float dht = dh[gid] + rnn_dy(dy, p, b, j);
  const float du = dht * (hp[p.off_hp + gid] - n);
  if (gru) dgates[row + j] = 0.0f;  // r only gets its gradient through the candidate
  dgates[row + nsig + j] = dht * (1.0f - u) * (1.0f - n * n);
  dgates[row + (gru ? H : 0u) + j] = sign * du;
  dhp[gid] = dht * u;
}

// GRU/MGU part 2, after drh = da_n U_n: gate0 also saw rh = gate0 * h_prev; sigmoid slopes.
kernel void rnn_gated_backward2_float32(device const float* gates [[buffer(0)]], device float* dgates [[buffer(1)]],
                                        device const float* drh [[buffer(2)]], device const float* hp [[buffer(3)]],
                                        device float* dhp [[buffer(4)]], device const int* lengths [[buffer(5)]],
                                        constant MnnRnnStepParams& p [[buffer(6)]],
                                        uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden, G = p.gates;
  if (gid >= p.batch * H) return;
  const uint b = gid / H, j = gid % H;
  if (!rnn_active(lengths, p, b)) return;  // gradients already zero, dhp already the pass-through
  const uint row = p.off_gates + b * G * H;
  const float dr = drh[gid];
  dgates[row + j] += dr * hp[p.off_hp + gid];
  dhp[gid] += dr * gates[row + j];
  for (uint k = 0; k + 1 < G; ++k) {
    const float s = gates[row + k * H + j];
    dgates[row + k * H + j] *= s * (1.0f - s);
  }
}

// ---------------------------------------------------------------- products and reductions

struct RnnOperands {
  device const float* a_ptr;
  uint a_rs, a_cs;
  device const float* b_ptr;
  uint b_rs, b_cs;
  float a(uint m, uint k) const { return a_ptr[m * a_rs + k * a_cs]; }
  float b(uint k, uint n) const { return b_ptr[k * b_rs + n * b_cs]; }
};

kernel void rnn_gemm_float32(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                             device float* c [[buffer(2)]], constant MnnRnnGemmParams& p [[buffer(3)]],
                             uint2 tid [[thread_position_in_threadgroup]], uint3 tg [[threadgroup_position_in_grid]]) {
  threadgroup float as_[MNN_TILE_K * MNN_TILE];
  threadgroup float bs[MNN_TILE_K * MNN_TILE];
  const uint m0 = tg.y * MNN_TILE, n0 = tg.x * MNN_TILE;
  RnnOperands op = {a + p.a_off, p.a_rs, p.a_cs, b + p.b_off, p.b_rs, p.b_cs};
  float acc[4];
  mnn_gemm_tile(op, p.M, p.N, p.K, m0, n0, tid, as_, bs, false, acc);
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) {
      const uint m = m0 + tid.y + 16 * i, n = n0 + tid.x + 16 * j;
      if (m >= p.M || n >= p.N) continue;
      const uint ci = p.c_off + m * p.ldc + n;
      const float v = p.alpha * acc[2 * i + j];
      c[ci] = p.beta == 0.0f ? v : v + p.beta * c[ci];
    }
}

kernel void rnn_column_sums_float32(device const float* a [[buffer(0)]], device float* out [[buffer(1)]],
                                    constant MnnRnnReduceParams& p [[buffer(2)]],
                                    uint gid [[thread_position_in_grid]]) {
  if (gid >= p.cols) return;
  float s = 0.0f;
  for (uint r = 0; r < p.rows; ++r) s += a[r * p.cols + gid];
  out[gid] = s;
}

// dp_i = sum dA_i * c_prev, dp_f = sum dA_f * c_prev, dp_o = sum dA_o * c_after over every (t, b).
kernel void rnn_peephole_backward_float32(device const float* dgates [[buffer(0)]], device const float* cp [[buffer(1)]],
                                          device const float* c_last [[buffer(2)]], device float* dpeep [[buffer(3)]],
                                          constant MnnRnnReduceParams& p [[buffer(4)]],
                                          uint gid [[thread_position_in_grid]]) {
  const uint H = p.hidden, B = p.batch, T = p.time;
  if (gid >= H) return;
  float si = 0.0f, sf = 0.0f, so = 0.0f;
  for (uint s = 0; s < T; ++s) {
    const uint t = p.reverse != 0 ? T - 1 - s : s;
    const uint tn = p.reverse != 0 ? T - 2 - s : s + 1;  // the next step's time (valid when s + 1 < T)
    for (uint b = 0; b < B; ++b) {
      const uint row = (t * B + b) * 4 * H;
      const float c0 = cp[(t * B + b) * H + gid];
      const float c1 = s + 1 < T ? cp[(tn * B + b) * H + gid] : c_last[b * H + gid];
      si += dgates[row + gid] * c0;
      sf += dgates[row + H + gid] * c0;
      so += dgates[row + 3 * H + gid] * c1;
    }
  }
  dpeep[gid] = si;
  dpeep[H + gid] = sf;
  dpeep[2 * H + gid] = so;
}

kernel void rnn_cast_widen_float16(device const half* in [[buffer(0)]], device float* out [[buffer(1)]],
                                   constant MnnRnnReduceParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= p.count) return;
  out[p.out_off + gid] = float(in[p.in_off + gid]);
}

kernel void rnn_cast_narrow_float16(device const float* in [[buffer(0)]], device half* out [[buffer(1)]],
                                    constant MnnRnnReduceParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= p.count) return;
  out[p.out_off + gid] = half(in[p.in_off + gid]);
}

kernel void rnn_copy_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                             constant MnnRnnReduceParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= p.count) return;
  out[p.out_off + gid] = in[p.in_off + gid];
}

kernel void rnn_zero_float32(device float* out [[buffer(0)]], constant MnnRnnReduceParams& p [[buffer(1)]],
                             uint gid [[thread_position_in_grid]]) {
  if (gid >= p.count) return;
  out[p.out_off + gid] = 0.0f;
}

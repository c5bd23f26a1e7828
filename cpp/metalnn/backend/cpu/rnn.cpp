#include "metalnn/backend/cpu/rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "metalnn/backend/cpu/blas.h"
#include "metalnn/backend/cpu/conv_storage.h"
#include "metalnn/backend/cpu/rnn_gates.h"
#include "metalnn/backend/cpu/rnn_lstm.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

inline float relu_gate(float a) { return a < 0.f ? 0.f : a; }  // NaN stays NaN

// d act / d a from the output h = act(a).
inline float activation_slope(uint32_t act, float h) {
  if (act == MNN_RNN_RELU) return h > 0.f ? 1.f : 0.f;
  if (act == MNN_RNN_SIGMOID) return h * (1.f - h);
  return 1.f - h * h;
}

// Runs fn(b0, b1) over batch rows in parallel chunks of a few thousand elements.
template <class Fn>
void over_rows(int64_t B, int64_t H, Fn&& fn) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1));
  parallel_for(B, grain, [&](int64_t b0, int64_t b1) { fn(b0, b1); });
}

// Per layer and direction: raw pointers into the float32 buffers.
struct Layer {
  MnnRnnStepParams p{};
  int64_t T = 0, B = 0, I = 0, H = 0, G = 0;
  bool reverse = false;
  const float *W = nullptr, *U = nullptr, *bias = nullptr, *peep = nullptr;
  float *gates = nullptr, *hp = nullptr, *cp = nullptr, *rh = nullptr, *h_last = nullptr, *c_last = nullptr;
  const int32_t* lengths = nullptr;

  int64_t time_of(int64_t s) const { return reverse ? T - 1 - s : s; }
  bool active(int64_t b, int64_t t) const { return !lengths || t < lengths[b]; }
  // The state after time t: the next step's "previous" slot, or the final state.
  float* h_after(int64_t s) const { return s + 1 < T ? hp + time_of(s + 1) * B * H : h_last; }
  float* c_after(int64_t s) const { return s + 1 < T ? cp + time_of(s + 1) * B * H : c_last; }
};

// Row kernels take every array as a restrict parameter: gcc honours restrict on parameters
// (not on locals), which lets these loops vectorise without run-time alias checks.

// h = u h' + (1 - u) n with u = s + m * gate (s, m = 0, 1 or 1, -1).
void gated_row_forward(const float* __restrict ug, float* __restrict ng, const float* __restrict bias,
                       const float* __restrict h0, float* __restrict hr, float* __restrict yr, float s, float m,
                       int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float n = tanh_gate(ng[j] + bias[j]);
    const float u = s + m * ug[j];
    const float h = u * h0[j] + (1.f - u) * n;
    ng[j] = n;
    hr[j] = h;
    yr[j] = h;
  }
}

template <bool Peep>
void lstm_row_backward(const float* __restrict g, const float* __restrict dh, const float* __restrict dyr,
                       const float* __restrict dc, const float* __restrict c0, const float* __restrict c1,
                       const float* __restrict pw, float* __restrict di, float* __restrict df,
                       float* __restrict dgc, float* __restrict dout, float* __restrict dcpr,
                       float* __restrict dhpr, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
    const float dht = dh[j] + dyr[j];
    const float tc = tanh_gate(c1[j]);
    const float dao = dht * tc * o * (1.f - o);
    float dct = dc[j] + dht * o * (1.f - tc * tc);
    if (Peep) dct += dao * pw[2 * H + j];
    const float dai = dct * gg * i * (1.f - i);
    const float daf = dct * c0[j] * f * (1.f - f);
    const float dag = dct * i * (1.f - gg * gg);
    float dcprev = dct * f;
    if (Peep) dcprev += dai * pw[j] + daf * pw[H + j];
    di[j] = dai;
    df[j] = daf;
    dgc[j] = dag;
    dout[j] = dao;
    dcpr[j] = dcprev;
    dhpr[j] = 0.f;
  }
}

void gated_row_backward(const float* __restrict n_, const float* __restrict ug, const float* __restrict dh,
                        const float* __restrict dyr, const float* __restrict h0, float* __restrict dn,
                        float* __restrict dug, float* __restrict dp, float s, float m, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float dht = dh[j] + dyr[j];
    const float n = n_[j];
    const float u = s + m * ug[j];
    const float du = dht * (h0[j] - n);
    dn[j] = dht * (1.f - u) * (1.f - n * n);
    dug[j] = m * du;
    dp[j] = dht * u;
  }
}

// Zeros standing in for a missing output gradient (dy undefined).
const float* zeros_for(int64_t n) {
  thread_local std::vector<float> z;
  if ((int64_t)z.size() < n) z.assign((size_t)n, 0.f);
  return z.data();
}

// ---- forward step kernels (one time step, rows [b0, b1)) ----

void single_forward_rows(const Layer& L, int64_t t, float* hn, float* y, int64_t ldy, int64_t b0, int64_t b1) {
  const int64_t H = L.H;
  const float* hp = L.hp + t * L.B * H;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict a = L.gates + (t * L.B + b) * H;
    float* __restrict yr = y + (t * L.B + b) * ldy;
    float* __restrict hr = hn + b * H;
    if (!L.active(b, t)) {
      std::memcpy(hr, hp + b * H, H * sizeof(float));
      std::fill(yr, yr + H, 0.f);
      std::fill(a, a + H, 0.f);
      continue;
    }
    const float* __restrict bias = L.bias;
    // One loop per activation, so each vectorises.
    if (L.p.activation == MNN_RNN_RELU) {
      for (int64_t j = 0; j < H; ++j) a[j] = relu_gate(a[j] + bias[j]);
    } else if (L.p.activation == MNN_RNN_SIGMOID) {
      for (int64_t j = 0; j < H; ++j) a[j] = sigmoid_gate(a[j] + bias[j]);
    } else {
      for (int64_t j = 0; j < H; ++j) a[j] = tanh_gate(a[j] + bias[j]);
    }
    std::memcpy(hr, a, H * sizeof(float));
    std::memcpy(yr, a, H * sizeof(float));
  }
}

template <bool Peep>
void lstm_forward_rows(const Layer& L, int64_t t, float* hn, float* cn, float* y, int64_t ldy, int64_t b0,
                       int64_t b1) {
  const int64_t H = L.H, B = L.B;
  const float* hp = L.hp + t * B * H;
  const float* cp = L.cp + t * B * H;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict g = L.gates + (t * B + b) * 4 * H;
    float* __restrict yr = y + (t * B + b) * ldy;
    float* __restrict hr = hn + b * H;
    float* __restrict cr = cn + b * H;
    const float* __restrict c0 = cp + b * H;
    if (!L.active(b, t)) {
      std::memcpy(hr, hp + b * H, H * sizeof(float));
      std::memcpy(cr, c0, H * sizeof(float));
      std::fill(yr, yr + H, 0.f);
      std::fill(g, g + 4 * H, 0.f);
      continue;
    }
    lstm_row_forward<Peep>(g, g + H, g + 2 * H, g + 3 * H, L.bias, L.peep, c0, cr, hr, yr, H, H);
  }
}

// GRU/MGU, after the gate product: sigmoid gates, rh = gate0 * h_prev (the candidate's input).
void gated_forward_rows1(const Layer& L, int64_t t, int64_t b0, int64_t b1) {
  const int64_t H = L.H, B = L.B, GH = L.G * H, nsig = (L.G - 1) * H;
  const float* hp = L.hp + t * B * H;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict g = L.gates + (t * B + b) * GH;
    float* __restrict rh = L.rh + (t * B + b) * H;
    if (!L.active(b, t)) {
      std::fill(g, g + GH, 0.f);
      std::fill(rh, rh + H, 0.f);
      continue;
    }
    const float* __restrict bias = L.bias;
    for (int64_t j = 0; j < nsig; ++j) g[j] = sigmoid_gate(g[j] + bias[j]);
    const float* __restrict h = hp + b * H;
    for (int64_t j = 0; j < H; ++j) rh[j] = g[j] * h[j];
  }
}

// GRU/MGU, after the candidate product: n = tanh(.), h = u h' + (1 - u) n.
void gated_forward_rows2(const Layer& L, int64_t t, float* hn, float* y, int64_t ldy, int64_t b0, int64_t b1) {
  const int64_t H = L.H, B = L.B, GH = L.G * H, nsig = (L.G - 1) * H;
  const bool gru = L.p.cell == MNN_RNN_GRU, flip = L.p.flip_output_gates != 0;
  // u = z (GRU) or 1 - f (MGU); flipping swaps u and 1 - u.
  const int64_t uoff = gru ? H : 0;
  const bool one_minus = gru == flip;
  const float* hp = L.hp + t * B * H;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict g = L.gates + (t * B + b) * GH;
    float* __restrict yr = y + (t * B + b) * ldy;
    float* __restrict hr = hn + b * H;
    const float* __restrict h0 = hp + b * H;
    if (!L.active(b, t)) {
      std::memcpy(hr, h0, H * sizeof(float));
      std::fill(yr, yr + H, 0.f);
      continue;
    }
    gated_row_forward(g + uoff, g + nsig, L.bias + nsig, h0, hr, yr, one_minus ? 1.f : 0.f, one_minus ? -1.f : 1.f,
                      H);
  }
}

// The LSTM without peephole or lengths runs the fused per-step kernels (rnn_lstm.h).
bool fused_lstm(const Layer& L) { return L.p.cell == MNN_RNN_LSTM && !L.peep && !L.lengths; }

LstmSequence lstm_sequence(const Layer& L) {
  LstmSequence s;
  s.T = L.T, s.B = L.B, s.I = L.I, s.H = L.H, s.reverse = L.reverse;
  s.W = L.W, s.U = L.U, s.bias = L.bias;
  s.gates = L.gates, s.hp = L.hp, s.cp = L.cp, s.h_last = L.h_last, s.c_last = L.c_last;
  return s;
}

// A buffer per calling thread that only grows (the steady-state step allocates nothing).
float* reusable(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

// One layer and direction over the whole sequence. x (T*B, I) float32; y rows of ldy.
// h0_zero: the initial h is all zeros (the fused LSTM skips its product).
void layer_forward(const Layer& L, const float* x, float* y, int64_t ldy, bool h0_zero) {
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, G = L.G, GH = G * H;
  if (fused_lstm(L)) {
    lstm_forward_fused(lstm_sequence(L), x, y, ldy, h0_zero);
    return;
  }
  // Input projections of every step in one product; biases join in the step kernels.
  sgemm_parallel(false, true, T * B, GH, I, 1.f, x, I, L.W, I, 0.f, L.gates, GH);
  const bool gated = L.p.cell == MNN_RNN_GRU || L.p.cell == MNN_RNN_MGU;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = L.time_of(s);
    const float* hprev = L.hp + t * B * H;
    float* g = L.gates + t * B * GH;
    float* hn = L.h_after(s);
    if (!gated) {
      sgemm_parallel(false, true, B, GH, H, 1.f, hprev, H, L.U, H, 1.f, g, GH);
      if (L.p.cell == MNN_RNN_LSTM) {
        float* cn = L.c_after(s);
        over_rows(B, 4 * H, [&](int64_t b0, int64_t b1) {
          if (L.peep)
            lstm_forward_rows<true>(L, t, hn, cn, y, ldy, b0, b1);
          else
            lstm_forward_rows<false>(L, t, hn, cn, y, ldy, b0, b1);
        });
      } else {
        over_rows(B, H, [&](int64_t b0, int64_t b1) { single_forward_rows(L, t, hn, y, ldy, b0, b1); });
      }
    } else {
      const int64_t nsig = (G - 1) * H;
      sgemm_parallel(false, true, B, nsig, H, 1.f, hprev, H, L.U, H, 1.f, g, GH);
      over_rows(B, GH, [&](int64_t b0, int64_t b1) { gated_forward_rows1(L, t, b0, b1); });
      sgemm_parallel(false, true, B, H, H, 1.f, L.rh + t * B * H, H, L.U + nsig * H, H, 1.f, g + nsig, GH);
      over_rows(B, 2 * H, [&](int64_t b0, int64_t b1) { gated_forward_rows2(L, t, hn, y, ldy, b0, b1); });
    }
  }
}

// ---- backward step kernels ----
// dhc: dL/dh after the step (from later steps), dy: this step's output gradient (may be null),
// dhp: written with the part of dL/dh_prev that does not go through U (pass-through, z*dh).

void single_backward_rows(const Layer& L, int64_t t, float* dg, const float* dhc, const float* dy, int64_t ldy,
                          float* dhp, int64_t b0, int64_t b1) {
  const int64_t H = L.H, B = L.B;
  const uint32_t act = L.p.activation;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict d = dg + (t * B + b) * H;
    const float* __restrict dh = dhc + b * H;
    float* __restrict dp = dhp + b * H;
    if (!L.active(b, t)) {
      std::fill(d, d + H, 0.f);
      std::memcpy(dp, dh, H * sizeof(float));
      continue;
    }
    const float* __restrict h = L.gates + (t * B + b) * H;
    const float* __restrict dyr = dy ? dy + (t * B + b) * ldy : nullptr;
    for (int64_t j = 0; j < H; ++j) {
      const float g = dh[j] + (dyr ? dyr[j] : 0.f);
      d[j] = g * activation_slope(act, h[j]);
      dp[j] = 0.f;
    }
  }
}

template <bool Peep>
void lstm_backward_rows(const Layer& L, int64_t s, float* dg, const float* dhc, const float* dcc, const float* dy,
                        int64_t ldy, float* dhp, float* dcp, int64_t b0, int64_t b1) {
  const int64_t H = L.H, B = L.B, t = L.time_of(s);
  const float* cprev = L.cp + t * B * H;
  const float* cnext = L.c_after(s);
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict d = dg + (t * B + b) * 4 * H;
    const float* __restrict dh = dhc + b * H;
    const float* __restrict dc = dcc + b * H;
    float* __restrict dhpr = dhp + b * H;
    float* __restrict dcpr = dcp + b * H;
    if (!L.active(b, t)) {
      std::fill(d, d + 4 * H, 0.f);
      std::memcpy(dhpr, dh, H * sizeof(float));
      std::memcpy(dcpr, dc, H * sizeof(float));
      continue;
    }
    const float* __restrict g = L.gates + (t * B + b) * 4 * H;
    const float* __restrict c0 = cprev + b * H;
    const float* __restrict c1 = cnext + b * H;
    const float* dyr = dy ? dy + (t * B + b) * ldy : zeros_for(H);
    lstm_row_backward<Peep>(g, dh, dyr, dc, c0, c1, L.peep, d, d + H, d + 2 * H, d + 3 * H, dcpr, dhpr, H);
  }
}

// GRU/MGU part 1: candidate and output-mix gradients; raw (pre-slope) gate gradients.
void gated_backward_rows1(const Layer& L, int64_t t, float* dg, const float* dhc, const float* dy, int64_t ldy,
                          float* dhp, int64_t b0, int64_t b1) {
  const int64_t H = L.H, B = L.B, GH = L.G * H, nsig = (L.G - 1) * H;
  const bool gru = L.p.cell == MNN_RNN_GRU, flip = L.p.flip_output_gates != 0;
  const int64_t uoff = gru ? H : 0;
  const bool one_minus = gru == flip;
  const float* hprev = L.hp + t * B * H;
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict d = dg + (t * B + b) * GH;
    const float* __restrict dh = dhc + b * H;
    float* __restrict dp = dhp + b * H;
    if (!L.active(b, t)) {
      std::fill(d, d + GH, 0.f);
      std::memcpy(dp, dh, H * sizeof(float));
      continue;
    }
    const float* __restrict g = L.gates + (t * B + b) * GH;
    const float* __restrict h0 = hprev + b * H;
    const float* dyr = dy ? dy + (t * B + b) * ldy : zeros_for(H);
    if (gru) std::fill(d, d + H, 0.f);  // r only gets its gradient through the candidate
    gated_row_backward(g + nsig, g + uoff, dh, dyr, h0, d + nsig, d + uoff, dp, one_minus ? 1.f : 0.f,
                       one_minus ? -1.f : 1.f, H);
  }
}

// GRU/MGU part 2, after drh = da_n U_n: gate0 also saw rh = gate0 * h_prev; apply sigmoid slopes.
void gated_backward_rows2(const Layer& L, int64_t t, float* dg, const float* drh, float* dhp, int64_t b0,
                          int64_t b1) {
  const int64_t H = L.H, B = L.B, GH = L.G * H, nsig = (L.G - 1) * H;
  const float* hprev = L.hp + t * B * H;
  for (int64_t b = b0; b < b1; ++b) {
    if (!L.active(b, t)) continue;  // gradients already zero, dhp already the pass-through
    float* __restrict d = dg + (t * B + b) * GH;
    const float* __restrict g = L.gates + (t * B + b) * GH;
    const float* __restrict h0 = hprev + b * H;
    const float* __restrict dr = drh + b * H;
    float* __restrict dp = dhp + b * H;
    for (int64_t j = 0; j < H; ++j) {
      d[j] += dr[j] * h0[j];
      dp[j] += dr[j] * g[j];
    }
    for (int64_t j = 0; j < nsig; ++j) d[j] *= g[j] * (1.f - g[j]);
  }
}

bool all_zero(const float* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (a[i] != 0.f) return false;
  return true;
}

// Column sums of a (rows, cols) matrix into out (overwritten).
void column_sums(const float* a, int64_t rows, int64_t cols, float* out) {
  parallel_for(cols, std::max<int64_t>(64, cols / 8), [&](int64_t c0, int64_t c1) {
    std::fill(out + c0, out + c1, 0.f);
    for (int64_t r = 0; r < rows; ++r) {
      const float* __restrict row = a + r * cols;
      float* __restrict o = out;
      for (int64_t c = c0; c < c1; ++c) o[c] += row[c];
    }
  });
}

struct LayerGrad {
  float *dW, *dU, *db, *dpeep;
};

// One layer and direction backward. dy rows of ldy (may be null); dh/dc: in = dL/d(final state),
// out = dL/d(initial state) (dh unspecified on the fused LSTM path when !need_dh0). x (T*B, I) is
// the layer input; dx (T*B, I) gets += dgates W.
void layer_backward(const Layer& L, const float* x, const float* dy, int64_t ldy, float* dh, float* dc, float* dx,
                    bool dx_accumulate, const LayerGrad& out, bool need_dh0) {
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, G = L.G, GH = G * H;
  const bool gated = L.p.cell == MNN_RNN_GRU || L.p.cell == MNN_RNN_MGU;
  const bool lstm = L.p.cell == MNN_RNN_LSTM;
  // Every entry of dgates is written below (inactive rows get zeros).
  thread_local std::vector<float> dgates;
  float* dg = reusable(dgates, T * B * GH);
  std::vector<float> dhp, dcp, drh;
  if (fused_lstm(L)) {
    lstm_backward_fused(lstm_sequence(L), dy, ldy, dh, dc, dg, need_dh0);
  } else {
    dhp.resize((size_t)(B * H));
    dcp.resize(lstm ? (size_t)(B * H) : 0);
    drh.resize(gated ? (size_t)(B * H) : 0);
  }
  for (int64_t s = fused_lstm(L) ? -1 : T - 1; s >= 0; --s) {
    const int64_t t = L.time_of(s);
    float* dgt = dg + t * B * GH;
    if (L.p.cell == MNN_RNN_SINGLE_GATE) {
      over_rows(B, H, [&](int64_t b0, int64_t b1) { single_backward_rows(L, t, dg, dh, dy, ldy, dhp.data(), b0, b1); });
      sgemm_parallel(false, false, B, H, GH, 1.f, dgt, GH, L.U, H, 1.f, dhp.data(), H);
    } else if (lstm) {
      over_rows(B, 4 * H, [&](int64_t b0, int64_t b1) {
        if (L.peep)
          lstm_backward_rows<true>(L, s, dg, dh, dc, dy, ldy, dhp.data(), dcp.data(), b0, b1);
        else
          lstm_backward_rows<false>(L, s, dg, dh, dc, dy, ldy, dhp.data(), dcp.data(), b0, b1);
      });
      sgemm_parallel(false, false, B, H, GH, 1.f, dgt, GH, L.U, H, 1.f, dhp.data(), H);
      std::memcpy(dc, dcp.data(), (size_t)(B * H) * sizeof(float));
    } else {
      const int64_t nsig = (G - 1) * H;
      over_rows(B, GH, [&](int64_t b0, int64_t b1) { gated_backward_rows1(L, t, dg, dh, dy, ldy, dhp.data(), b0, b1); });
      sgemm_parallel(false, false, B, H, H, 1.f, dgt + nsig, GH, L.U + nsig * H, H, 0.f, drh.data(), H);
      over_rows(B, GH, [&](int64_t b0, int64_t b1) { gated_backward_rows2(L, t, dg, drh.data(), dhp.data(), b0, b1); });
      sgemm_parallel(false, false, B, H, nsig, 1.f, dgt, GH, L.U, H, 1.f, dhp.data(), H);
    }
    std::memcpy(dh, dhp.data(), (size_t)(B * H) * sizeof(float));
  }
  // Weight gradients as products over all T*B rows at once.
  const int64_t R = T * B;
  sgemm_parallel(true, false, GH, I, R, 1.f, dg, GH, x, I, 0.f, out.dW, I);
  // The recurrent products skip the first step's rows when its h is all zeros (the usual zero
  // initial state; rh = r h is then zero too): a 1/T of their work that adds nothing.
  const int64_t first = L.time_of(0) * B;
  const bool skip = T > 1 && all_zero(L.hp + first * H, B * H);
  const int64_t r0 = skip && !L.reverse ? B : 0, rows = skip ? R - B : R;
  const float *dgu = dg + r0 * GH, *hpu = L.hp + r0 * H;
  if (!gated) {
    sgemm_parallel(true, false, GH, H, rows, 1.f, dgu, GH, hpu, H, 0.f, out.dU, H);
  } else {
    const int64_t nsig = (G - 1) * H;
    sgemm_parallel(true, false, nsig, H, rows, 1.f, dgu, GH, hpu, H, 0.f, out.dU, H);
    sgemm_parallel(true, false, H, H, rows, 1.f, dgu + nsig, GH, L.rh + r0 * H, H, 0.f, out.dU + nsig * H, H);
  }
  column_sums(dg, R, GH, out.db);
  if (out.dpeep) {
    // i and f saw the cell before the step, o the cell after it.
    std::fill(out.dpeep, out.dpeep + 3 * H, 0.f);
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = L.time_of(s);
      const float* c1 = L.c_after(s);
      for (int64_t b = 0; b < B; ++b) {
        const float* __restrict d = dg + (t * B + b) * GH;
        const float* __restrict c0 = L.cp + (t * B + b) * H;
        const float* __restrict cn = c1 + b * H;
        float* __restrict p = out.dpeep;
        for (int64_t j = 0; j < H; ++j) {
          p[j] += d[j] * c0[j];
          p[H + j] += d[H + j] * c0[j];
          p[2 * H + j] += d[3 * H + j] * cn[j];
        }
      }
    }
  }
  sgemm_parallel(false, false, R, I, GH, 1.f, dg, GH, L.W, I, dx_accumulate ? 1.f : 0.f, dx, I);
}

float* f32(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// The views of layer l, direction dir (weights already float32).
Layer make_layer(const RnnDescriptor& d, const RnnState& st, int64_t l, int dir, const float* const* w) {
  const RnnLayerDescriptor& ld = d.layers[(size_t)l];
  const RnnLayerBuffers& buf = st.buffers[(size_t)(l * d.directions() + dir)];
  Layer L;
  L.T = st.x_shape[0];
  L.B = st.x_shape[1];
  L.I = ld.input_size;
  L.H = ld.hidden_size;
  L.G = ld.gates();
  L.reverse = dir == 1;
  L.p.cell = ld.cell;
  L.p.activation = ld.activation;
  L.p.batch = (uint32_t)L.B;
  L.p.hidden = (uint32_t)L.H;
  L.p.gates = (uint32_t)L.G;
  L.p.peephole = ld.peephole;
  L.p.flip_output_gates = ld.flip_output_gates;
  L.W = w[0];
  L.U = w[1];
  L.bias = w[2];
  L.peep = ld.peephole ? w[3] : nullptr;
  L.gates = f32(buf.gates);
  L.hp = f32(buf.hp);
  L.cp = f32(buf.cp);
  L.rh = f32(buf.rh);
  L.h_last = f32(buf.h_last);
  L.c_last = f32(buf.c_last);
  L.lengths = st.lengths.defined() ? st.lengths.data<int32_t>() : nullptr;
  return L;
}

int weights_per_layer(const RnnLayerDescriptor& ld) { return ld.peephole ? 4 : 3; }

// Copies an optional (B, H) initial state into dst as float32 (zeros when undefined).
void load_state(const Tensor& src, float* dst, int64_t n) {
  if (!src.defined()) {
    std::fill(dst, dst + n, 0.f);
  } else if (src.dtype() == DType::float32) {
    std::memcpy(dst, src.data<float>(), (size_t)n * sizeof(float));
  } else {
    half_to_float_n(src.data<uint16_t>(), dst, (size_t)n);
  }
}

void store_state(const float* src, const Tensor& dst) {
  if (dst.defined()) store_floats(src, dst);
}

}  // namespace

void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last) {
  const int D = d.directions();
  const int64_t L = (int64_t)d.layers.size(), B = x.dim(1);
  FloatView xf(x);
  std::vector<std::unique_ptr<FloatView>> wv;
  std::vector<const float*> wp;
  for (const Tensor& t : w) {
    wv.push_back(std::make_unique<FloatView>(t));
    wp.push_back(wv.back()->get());
  }
  FloatOut yout(y);
  size_t wi = 0;
  const float* in = xf.get();
  for (int64_t l = 0; l < L; ++l) {
    const RnnLayerDescriptor& ld = d.layers[(size_t)l];
    const int64_t H = ld.hidden_size;
    float* out = l + 1 < L ? st.layer_outputs[(size_t)l].data<float>() : yout.get();
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = (size_t)(l * D + dir);
      Layer lay = make_layer(d, st, l, dir, wp.data() + wi);
      wi += (size_t)weights_per_layer(ld);
      const int64_t first = lay.time_of(0);
      load_state(h0.empty() ? Tensor() : h0[k], lay.hp + first * B * H, B * H);
      if (lay.cp) load_state(c0.empty() ? Tensor() : c0[k], lay.cp + first * B * H, B * H);
      const bool h0_zero = h0.empty() || !h0[k].defined();
      layer_forward(lay, in, out + dir * H, D * H, h0_zero);
      store_state(lay.h_last, h_last[k]);
      if (lay.c_last) store_state(lay.c_last, c_last[k]);
    }
    in = out;
  }
  yout.finish();
}

void rnn_backward(const RnnDescriptor& d, const Tensor& x, const Tensor& dy, const std::vector<Tensor>& dh_last,
                  const std::vector<Tensor>& dc_last, const std::vector<Tensor>& w, const RnnState& st,
                  const Tensor& dx, const std::vector<Tensor>& dw, const std::vector<Tensor>& dh0,
                  const std::vector<Tensor>& dc0) {
  const int D = d.directions();
  const int64_t L = (int64_t)d.layers.size(), T = x.dim(0), B = x.dim(1);
  FloatView xf(x), dyf(dy);
  std::vector<std::unique_ptr<FloatView>> wv;
  std::vector<const float*> wp;
  for (const Tensor& t : w) {
    wv.push_back(std::make_unique<FloatView>(t));
    wp.push_back(wv.back()->get());
  }
  std::vector<size_t> first_weight((size_t)L);
  for (size_t l = 0, wi = 0; l < (size_t)L; ++l) {
    first_weight[l] = wi;
    wi += (size_t)(weights_per_layer(d.layers[l]) * D);
  }
  FloatOut dxout(dx);
  // dL/d(layer output), float32 (T, B, D*H): the caller's dy for the top layer, then each
  // layer's input gradient for the layer below.
  std::vector<float> upper, lower;
  const float* dyl = dyf.get();
  for (int64_t l = L - 1; l >= 0; --l) {
    const RnnLayerDescriptor& ld = d.layers[(size_t)l];
    const int64_t H = ld.hidden_size, I = ld.input_size;
    const float* in = l == 0 ? xf.get() : st.layer_outputs[(size_t)(l - 1)].data<float>();
    float* dxl;
    if (l == 0) {
      dxl = dxout.get();
    } else {
      lower.assign((size_t)(T * B * I), 0.f);
      dxl = lower.data();
    }
    std::vector<float> dh((size_t)(B * H)), dc((size_t)(B * H));
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = (size_t)(l * D + dir);
      const size_t wi = first_weight[(size_t)l] + (size_t)(dir * weights_per_layer(ld));
      Layer lay = make_layer(d, st, l, dir, wp.data() + wi);
      load_state(dh_last.empty() ? Tensor() : dh_last[k], dh.data(), B * H);
      load_state(dc_last.empty() ? Tensor() : dc_last[k], dc.data(), B * H);
      std::vector<std::unique_ptr<FloatOut>> gouts;
      for (int j = 0; j < weights_per_layer(ld); ++j) gouts.push_back(std::make_unique<FloatOut>(dw[wi + j]));
      LayerGrad g{gouts[0]->get(), gouts[1]->get(), gouts[2]->get(), ld.peephole ? gouts[3]->get() : nullptr};
      // Undefined dh0 entries: the caller discards dL/dh_initial (ops rnn_backward).
      layer_backward(lay, in, dyl ? dyl + dir * H : nullptr, D * H, dh.data(), dc.data(), dxl, dir > 0, g,
                     dh0[k].defined());
      for (auto& o : gouts) o->finish();
      store_state(dh.data(), dh0[k]);
      if (ld.cell == MNN_RNN_LSTM) store_state(dc.data(), dc0[k]);
    }
    upper.swap(lower);
    dyl = upper.data();
  }
  dxout.finish();
}

}  // namespace metalnn::cpu

#include "metalnn/backend/cpu/rnn_lstm.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "metalnn/backend/cpu/rnn_gates.h"
#include "metalnn/core/thread_pool.h"

#if defined(__FMA__)
#include <immintrin.h>
#endif

// Without -march=native the 32-byte vectors are two SSE registers; every function passing them
// is internal to this file, so the ABI note gcc gives for that does not apply.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__AVX__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
// gcc 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps() and warn about it.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Register tiles are R batch rows x 4 vectors of NU units (16 with AVX-512, else 8): per k,
// 4 weight vectors stay in registers and R inputs are broadcast (8 loads per 16 FMAs with
// R = 4). Forward, the 4 vectors are the gates i, f, g, o of one chunk of NU units, so the tile
// is exactly what the cell of those units needs; backward they are 4 chunks of dL/dh_prev.
// Rows stay in the (B, .) layouts the rest of the layer uses, so the cells run on contiguous units.
// A last chunk of at most NU / 2 units runs on half vectors (and counts half in the team's split).

namespace metalnn::cpu {
namespace {

#if defined(__AVX512F__)
constexpr int64_t NU = 16;  // units per vector
#else
constexpr int64_t NU = 8;
#endif
typedef float vf __attribute__((vector_size(NU * 4)));
typedef float vfu __attribute__((vector_size(NU * 4), aligned(4)));
#if defined(__AVX512F__)
constexpr int MR = 4;  // 16 accumulators + 4 weight vectors + a broadcast, of 32 registers
#else
constexpr int MR = 2;  // AVX2's 16 registers
#endif

inline vf loadv(const float* p) { return *(const vfu*)p; }
inline void storev(float* p, vf v) { *(vfu*)p = v; }

// Half vectors for a last chunk of at most NU / 2 units (H = 200: 8 of 16), which full
// vectors would compute twice over. Same panel layouts; only the first half of each slot is read.
constexpr int64_t NH = NU / 2;
typedef float vh __attribute__((vector_size(NH * 4)));
typedef float vhu __attribute__((vector_size(NH * 4), aligned(4)));
inline vh loadv(const float* p, vh) { return *(const vhu*)p; }
inline vf loadv(const float* p, vf) { return loadv(p); }
inline void storev(float* p, vh v) { *(vhu*)p = v; }

// gcc would fold each weight load into every FMA that uses it (R loads instead of one).
template <class V>
inline void pin(V& v) {
#if defined(__AVX512F__)
  asm("" : "+v"(v));
#elif defined(__AVX__)
  asm("" : "+x"(v));
#else
  (void)v;
#endif
}

// acc + x * b as one fused multiply-add in every tile shape: left to the compiler, some shapes
// got a separate multiply and add, and rows would round differently by the tile they fall in.
inline vf fmav(float x, vf b, vf acc) {
#if defined(__FMA__)
#if defined(__AVX512F__)
  return (vf)_mm512_fmadd_ps(_mm512_set1_ps(x), (__m512)b, (__m512)acc);
#else
  return (vf)_mm256_fmadd_ps(_mm256_set1_ps(x), (__m256)b, (__m256)acc);
#endif
#else
  return acc + x * b;
#endif
}

inline vh fmav(float x, vh b, vh acc) {
#if defined(__FMA__) && defined(__AVX512F__)
  return (vh)_mm256_fmadd_ps(_mm256_set1_ps(x), (__m256)b, (__m256)acc);
#elif defined(__FMA__)
  return (vh)_mm_fmadd_ps(_mm_set1_ps(x), (__m128)b, (__m128)acc);
#else
  return acc + x * b;
#endif
}

float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

int64_t chunks_of(int64_t H) { return (H + NU - 1) / NU; }
// Whether the last chunk runs on half vectors.
bool half_last(int64_t H) { return NU > 8 && H - (chunks_of(H) - 1) * NU <= NH; }

// acc[r][v] += sum_k a[r * lda + k] * p[k * NV * NU + v * NU ..]: rows x NV vectors (full or half).
template <int R, int NV, class V>
inline void tile(const float* __restrict a, int64_t lda, const float* __restrict p, int64_t K, V (&acc)[R][NV]) {
  for (int64_t k = 0; k < K; ++k, p += NV * NU) {
    V b[NV];
    for (int v = 0; v < NV; ++v) {
      b[v] = loadv(p + v * NU, V{});
      pin(b[v]);
    }
    for (int r = 0; r < R; ++r) {
      const float x = a[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] = fmav(x, b[v], acc[r][v]);
    }
  }
}

// Calls fn(b0, R) over rows [b_begin, b_end) in tiles of MR rows, then single rows. With
// AVX-512, 6-row tiles first (24 accumulators: fewer loads per FMA; the forward ran 3% faster)
// as long as the rest splits into 4-row tiles (16 rows: 6 + 6 + 4), since single rows cost most.
template <class Fn>
void over_row_blocks(int64_t b_begin, int64_t b_end, Fn&& fn) {
  int64_t b = b_begin;
#if defined(__AVX512F__)
  int64_t n6 = (b_end - b_begin) / 6;
  while (n6 > 0 && (b_end - b_begin - 6 * n6) % MR != 0) --n6;
  for (int64_t k = 0; k < n6; ++k, b += 6) fn(b, std::integral_constant<int, 6>());
#endif
  for (; b + MR <= b_end; b += MR) fn(b, std::integral_constant<int, MR>());
  for (; b < b_end; ++b) fn(b, std::integral_constant<int, 1>());
}

// ---- forward ----

// The gate functions of rnn_gates.h on NU lanes at once (same steps, so the same results up
// to FMA contraction); the cell of a full chunk runs on the accumulators without a loop.
typedef int32_t vi __attribute__((vector_size(NU * 4)));

inline vf splat(float a) { return vf{} + a; }

inline vf expv(vf x) {
  x = x < splat(-87.f) ? splat(-87.f) : x;  // NaN stays NaN (comparisons are false)
  x = x > splat(88.f) ? splat(88.f) : x;
  const vf t = x * 1.44269504089f;
  const vi k = __builtin_convertvector(t + (t >= splat(0.f) ? splat(0.5f) : splat(-0.5f)), vi);
  const vf n = __builtin_convertvector(k, vf);
  return exp_reduced(x, n) * (vf)((k + 127) << 23);
}

inline vf sigmoidv(vf x) { return 1.0f / (1.0f + expv(-x)); }

inline vf tanhv(vf x) {
  const vi sign = (vi)x & (int32_t)0x80000000;
  const vf e = expv(-2.0f * (vf)((vi)x & 0x7fffffff));
  return (vf)((vi)((1.0f - e) / (1.0f + e)) | sign);
}

// Chunk c of [W | U]: per k, the gates i, f, g, o of units c*NU .. c*NU+NU-1 (zero past H).
// pack_rows writes n columns of the chunk's 4*NU weight rows (null: zeros) as n panel rows of
// 4*NU floats: with AVX-512, 16 x 16 blocks transposed in registers (a scalar scatter with
// stride 4*NU cost ~2% of the activity step), else KB columns at a time.
#if defined(__AVX512F__)
inline void transpose16(__m512 (&r)[16]) {
  __m512 a[16], b[16], c[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d x0 = _mm512_castps_pd(a[4 * i]), x1 = _mm512_castps_pd(a[4 * i + 1]),
                  x2 = _mm512_castps_pd(a[4 * i + 2]), x3 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      c[8 * i + j] = _mm512_shuffle_f32x4(b[8 * i + j], b[8 * i + 4 + j], 0x88);
      c[8 * i + 4 + j] = _mm512_shuffle_f32x4(b[8 * i + j], b[8 * i + 4 + j], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(c[j], c[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(c[j], c[8 + j], 0xdd);
  }
}

void pack_rows(const float* const* rows, int64_t n, float* panel) {
  constexpr int64_t S = 4 * NU;
  for (int64_t k0 = 0; k0 < n; k0 += 16) {
    const int64_t kn = std::min<int64_t>(16, n - k0);
    const __mmask16 m = (__mmask16)((1u << kn) - 1u);
    for (int64_t v0 = 0; v0 < S; v0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = rows[v0 + i] ? _mm512_maskz_loadu_ps(m, rows[v0 + i] + k0) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t k = 0; k < kn; ++k) _mm512_storeu_ps(panel + (k0 + k) * S + v0, r[k]);
    }
  }
}
#else
constexpr int64_t KB = 16;

void pack_rows(const float* const* rows, int64_t n, float* panel) {
  constexpr int64_t S = 4 * NU;
  for (int64_t k0 = 0; k0 < n; k0 += KB) {
    const int64_t kn = std::min(KB, n - k0);
    float* __restrict dst = panel + k0 * S;
    for (int64_t v = 0; v < S; ++v) {
      const float* __restrict src = rows[v] ? rows[v] + k0 : nullptr;
      for (int64_t k = 0; k < kn; ++k) dst[k * S + v] = src ? src[k] : 0.f;
    }
  }
}
#endif

void pack_forward(const LstmSequence& L, float* P, int64_t c0, int64_t c1) {
  const int64_t I = L.I, H = L.H, K = I + H, S = 4 * NU;
  const float* w[S];
  const float* r[S];
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t u = 0; u < NU; ++u) {
        const int64_t j = c * NU + u;
        w[q * NU + u] = j < H ? L.W + (q * H + j) * I : nullptr;
        r[q * NU + u] = j < H ? L.U + (q * H + j) * H : nullptr;
      }
    float* panel = P + c * K * S;
    pack_rows(w, I, panel);
    pack_rows(r, H, panel + I * S);
  }
}

struct Step {
  const float *xt, *hprev, *cprev;
  float *gt, *hn, *cn, *yt;
  int64_t ldy, Kh;
};

// Rows [b0, b0 + R) x chunk c: x W^T + h U^T into the gate slots, then the cell. V: vh for
// the half last chunk.
template <int R, class V>
__attribute__((noinline)) void forward_block(const LstmSequence& L, const Step& st, const float* panel, int64_t b0,
                                             int64_t c) {
  const int64_t I = L.I, H = L.H, G = 4 * H, j0 = c * NU, nv = std::min(NU, H - j0);
  V acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = V{};
  tile<R, 4>(st.xt + b0 * I, I, panel, I, acc);
  tile<R, 4>(st.hprev + b0 * H, H, panel + I * 4 * NU, st.Kh, acc);
  if constexpr (std::is_same<V, vf>::value) {
    if (nv == NU) {
      const vf bi = loadv(L.bias + j0), bf = loadv(L.bias + H + j0), bg = loadv(L.bias + 2 * H + j0),
               bo = loadv(L.bias + 3 * H + j0);
      for (int r = 0; r < R; ++r) {
        const int64_t b = b0 + r;
        float* g = st.gt + b * G + j0;
        const vf i = sigmoidv(acc[r][0] + bi), f = sigmoidv(acc[r][1] + bf), gg = tanhv(acc[r][2] + bg),
                 o = sigmoidv(acc[r][3] + bo);
        const vf c = f * loadv(st.cprev + b * H + j0) + i * gg;
        const vf h = o * tanhv(c);
        storev(g, i);
        storev(g + H, f);
        storev(g + 2 * H, gg);
        storev(g + 3 * H, o);
        storev(st.cn + b * H + j0, c);
        storev(st.hn + b * H + j0, h);
        storev(st.yt + b * st.ldy + j0, h);
      }
      return;
    }
  }
  for (int r = 0; r < R; ++r) {  // the last chunk, fewer than NU units
    const int64_t b = b0 + r;
    float* g = st.gt + b * G + j0;
    for (int q = 0; q < 4; ++q) {
      if (nv == NU) {
        storev(g + q * H, acc[r][q]);
      } else {
        float tmp[NU];
        storev(tmp, acc[r][q]);
        std::memcpy(g + q * H, tmp, (size_t)nv * sizeof(float));
      }
    }
    lstm_row_forward<false>(g, g + H, g + 2 * H, g + 3 * H, L.bias + j0, nullptr, st.cprev + b * H + j0,
                            st.cn + b * H + j0, st.hn + b * H + j0, st.yt + b * st.ldy + j0, H, nv);
  }
}

// ---- backward ----

// Panels of up to 4 chunks of U's columns: per n (row of U), the units side by side.
// Panel of chunks [c, c + nc) starts at P + c * NU * G.
// Chunks in the panel that starts at c (of [c, c1)): up to 4, the half last chunk alone.
int64_t panel_chunks(int64_t c, int64_t c1, int64_t H) {
  const int64_t nc = std::min<int64_t>(4, c1 - c);
  return nc > 1 && half_last(H) && c + nc == chunks_of(H) ? nc - 1 : nc;
}

void pack_backward(const LstmSequence& L, float* P, int64_t c0, int64_t c1) {
  const int64_t H = L.H, G = 4 * H;
  for (int64_t c = c0, nc; c < c1; c += nc) {
    nc = panel_chunks(c, c1, H);
    const int64_t width = nc * NU, n_in = std::min(width, H - c * NU);
    float* p = P + c * NU * G;
    for (int64_t n = 0; n < G; ++n, p += width) {
      std::memcpy(p, L.U + n * H + c * NU, (size_t)n_in * sizeof(float));
      std::fill(p + n_in, p + width, 0.f);
    }
  }
}

// The cell's gradient on units [0, n) of one row (no peephole): gate pre-activation
// gradients into d (stride H), dc becomes dL/dc_prev.
void cell_backward(const float* __restrict g, const float* __restrict dh, const float* __restrict dyr,
                   float* __restrict dc, const float* __restrict c0, const float* __restrict c1, float* __restrict d,
                   int64_t H, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
    const float dht = dh[j] + dyr[j];
    const float tc = tanh_gate(c1[j]);
    const float dct = dc[j] + dht * o * (1.f - tc * tc);
    d[j] = dct * gg * i * (1.f - i);
    d[H + j] = dct * c0[j] * f * (1.f - f);
    d[2 * H + j] = dct * i * (1.f - gg * gg);
    d[3 * H + j] = dht * tc * o * (1.f - o);
    dc[j] = dct * f;
  }
}

// The same on one full chunk of NU units with vector code. Chunk by chunk, every unit is
// computed by the same instructions whichever member owns it (a loop over a member's range
// would put different units in its vector body and its remainder, rounding them differently).
inline void cell_backward_chunk(const float* g, const float* dh, const float* dyr, float* dc, const float* c0,
                           const float* c1, float* d, int64_t H) {
  const vf i = loadv(g), f = loadv(g + H), gg = loadv(g + 2 * H), o = loadv(g + 3 * H);
  const vf dht = loadv(dh) + loadv(dyr);
  const vf tc = tanhv(loadv(c1));
  const vf dct = loadv(dc) + dht * o * (1.f - tc * tc);
  storev(d, dct * gg * i * (1.f - i));
  storev(d + H, dct * loadv(c0) * f * (1.f - f));
  storev(d + 2 * H, dct * i * (1.f - gg * gg));
  storev(d + 3 * H, dht * tc * o * (1.f - o));
  storev(dc, dct * f);
}

// dh rows [b0, b0 + R), units of chunks [c, c + NV): the step's gate gradients times U's panel.
// Not inlined: each tile gets its own register allocation (inlined, the accumulators spill).
template <int R, int NV, class V = vf>
__attribute__((noinline)) void backward_block(const float* dgt, int64_t G, const float* panel, float* dh, int64_t H,
                                              int64_t b0, int64_t c) {
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  tile<R, NV>(dgt + b0 * G, G, panel, G, acc);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      const int64_t j0 = (c + v) * NU, nv = std::min(NU, H - j0);
      float* dst = dh + (b0 + r) * H + j0;
      if (nv == NU) {
        storev(dst, acc[r][v]);
      } else {
        float tmp[NU];
        storev(tmp, acc[r][v]);
        std::memcpy(dst, tmp, (size_t)nv * sizeof(float));
      }
    }
}

template <int R>
void backward_rows(const float* dgt, int64_t G, const float* P, float* dh, int64_t H, int64_t b0, int64_t c0,
                   int64_t c1) {
  const bool half = half_last(H);
  for (int64_t c = c0, nc; c < c1; c += nc) {
    nc = panel_chunks(c, c1, H);
    const float* panel = P + c * NU * G;
    if (half && c + 1 == chunks_of(H)) {
      backward_block<R, 1, vh>(dgt, G, panel, dh, H, b0, c);
      continue;
    }
    switch (nc) {
      case 4: backward_block<R, 4>(dgt, G, panel, dh, H, b0, c); break;
      case 3: backward_block<R, 3>(dgt, G, panel, dh, H, b0, c); break;
      case 2: backward_block<R, 2>(dgt, G, panel, dh, H, b0, c); break;
      default: backward_block<R, 1>(dgt, G, panel, dh, H, b0, c); break;
    }
  }
}

// A team pays when each member gets enough rows x units to outweigh a barrier per step.
int team_size(int64_t B, int64_t H) { return std::min(num_threads(), B * H >= 2048 && chunks_of(H) >= 4 ? 2 : 1); }

// A member's share of the (chunk, row) tiles, in chunk-major order: whole chunks [cf0, cf1)
// and up to two pieces (rows [b0, b1) of one chunk) where its share starts or ends inside a
// chunk. Splitting rows of the boundary chunk keeps the members' work equal (13 chunks of 16
// units for H = 200 would otherwise split 6 / 7). A cell and the product that feeds it
// always have the same owner, so members only meet at the barriers.
struct Piece {
  int64_t c, b0, b1;
};
struct Share {
  int64_t cf0 = 0, cf1 = 0, rb0 = 0, rb1 = 0;  // whole chunks [cf0, cf1) on rows [rb0, rb1)
  Piece part[2];
  int parts = 0;
  bool by_rows = false;  // a member's rows depend on its rows only: no barrier per step
};

// Work is counted in half-chunk rows (a row of the half last chunk costs 1, others 2).
Share member_share(int64_t C, int64_t B, bool half, int rank, int team) {
  const int64_t full = 2 * B * (half ? C - 1 : C), W = full + (half ? B : 0);
  auto at = [&](int64_t w, int64_t& c, int64_t& r) {  // the tile where work w starts
    if (w < full) {
      c = w / (2 * B), r = (w % (2 * B)) / 2;
    } else {
      c = half ? C - 1 : C, r = w - full;
      if (r == B) ++c, r = 0;
    }
  };
  int64_t c0, r0, c1, r1;
  at(W * rank / team, c0, r0);
  at(W * (rank + 1) / team, c1, r1);
  Share sh;
  sh.rb1 = B;
  if (c0 == c1) {
    if (r1 > r0) sh.part[sh.parts++] = {c0, r0, r1};
    return sh;
  }
  sh.cf0 = r0 > 0 ? c0 + 1 : c0;
  sh.cf1 = c1;
  if (r0 > 0) sh.part[sh.parts++] = {c0, r0, B};
  if (r1 > 0) sh.part[sh.parts++] = {c1, 0, r1};
  return sh;
}

// With at least MR rows per member, each member takes every chunk of its own batch rows: a
// row's recurrence reads only that row, so the members meet once (after packing) instead of
// at every step. Each then streams the whole packed panel (K x 4H) from its own L2.
Share team_share(int64_t C, int64_t B, bool half, int rank, int team) {
  if (team == 1 || B < MR * team) return member_share(C, B, half, rank, team);
  Share sh;
  sh.by_rows = true;
  sh.cf1 = C;
  sh.rb0 = B * rank / team;
  sh.rb1 = B * (rank + 1) / team;
  return sh;
}

// The chunks [p0, p1) a member packs: its share's chunks, or with rows split, about 1/team of
// all, cut at multiples of `group` (the backward panels of 4 chunks start where the reader's do).
void packing_range(const Share& sh, int64_t C, int rank, int team, int64_t group, int64_t& p0, int64_t& p1) {
  auto cut = [&](int r) { return std::min(C, (C * r / team + group / 2) / group * group); };
  p0 = sh.by_rows ? cut(rank) : sh.cf0;
  p1 = sh.by_rows ? (rank + 1 == team ? C : cut(rank + 1)) : sh.cf1;
}

// Packs this member's share of the weight panels, then waits for the others: whole chunks in
// groups of `group` (packing_range), and each piece by the member whose rows start at 0.
template <class Pack>
void pack_team_share(const Share& sh, int64_t C, int rank, int n, int64_t group, SpinBarrier& barrier, Pack pack) {
  int64_t p0, p1;
  packing_range(sh, C, rank, n, group, p0, p1);
  pack(p0, p1);
  for (int k = 0; k < sh.parts; ++k)
    if (sh.part[k].b0 == 0) pack(sh.part[k].c, sh.part[k].c + 1);
  barrier.wait();
}

}  // namespace

void lstm_forward_fused(const LstmSequence& L, const float* x, float* y, int64_t ldy, bool h0_zero) {
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, G = 4 * H, C = chunks_of(H), K = I + H;
  thread_local std::vector<float> packed;
  float* P = scratch(packed, (size_t)(C * K * 4 * NU));
  const int team = team_size(B, H);
  const bool half = half_last(H);
  SpinBarrier barrier(team);
  parallel_team(team, [&](int rank, int n) {
    const Share sh = team_share(C, B, half, rank, n);
    pack_team_share(sh, C, rank, n, 1, barrier, [&](int64_t c0, int64_t c1) { pack_forward(L, P, c0, c1); });
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = L.reverse ? T - 1 - s : s, tn = L.reverse ? t - 1 : t + 1;
      const bool last = s + 1 == T;
      const Step st{x + t * B * I, L.hp + t * B * H, L.cp + t * B * H, L.gates + t * B * G,
                    last ? L.h_last : L.hp + tn * B * H, last ? L.c_last : L.cp + tn * B * H, y + t * B * ldy, ldy,
                    s == 0 && h0_zero ? 0 : H};
      auto rows = [&](int64_t c, int64_t b0, int64_t b1) {
        const float* panel = P + c * K * 4 * NU;
        auto blocks = [&](auto v) {
          using V = decltype(v);
          over_row_blocks(b0, b1, [&](int64_t b, auto r) { forward_block<decltype(r)::value, V>(L, st, panel, b, c); });
        };
        if (half && c + 1 == C)
          blocks(vh{});
        else
          blocks(vf{});
      };
      for (int64_t c = sh.cf0; c < sh.cf1; ++c) rows(c, sh.rb0, sh.rb1);
      for (int k = 0; k < sh.parts; ++k) rows(sh.part[k].c, sh.part[k].b0, sh.part[k].b1);
      if (!sh.by_rows) barrier.wait();  // the next step reads every unit of h
    }
  });
}

void lstm_backward_fused(const LstmSequence& L, const float* dy, int64_t ldy, float* dh, float* dc,
                         float* dgates, bool need_dh0) {
  const int64_t T = L.T, B = L.B, H = L.H, G = 4 * H, C = chunks_of(H);
  thread_local std::vector<float> packed, zeros;
  float* P = scratch(packed, (size_t)(C * NU * G));
  const float* zero_row = scratch(zeros, (size_t)H);
  std::fill(zeros.begin(), zeros.end(), 0.f);
  const int team = team_size(B, H);
  const bool half = half_last(H);
  SpinBarrier barrier(team);
  parallel_team(team, [&](int rank, int n) {
    const Share sh = team_share(C, B, half, rank, n);
    // Whole chunks in panels of up to 4, pieces alone.
    pack_team_share(sh, C, rank, n, 4, barrier, [&](int64_t c0, int64_t c1) { pack_backward(L, P, c0, c1); });
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = L.reverse ? T - 1 - s : s, tn = L.reverse ? t - 1 : t + 1;
      const float* gt = L.gates + t * B * G;
      const float* cprev = L.cp + t * B * H;
      const float* cnext = s + 1 == T ? L.c_last : L.cp + tn * B * H;
      float* dgt = dgates + t * B * G;
      // This member's units: dL/dh_t, dL/dc_t -> gate gradients of step t, dL/dc_{t-1}.
      auto cells = [&](int64_t b0, int64_t b1, int64_t c0, int64_t c1) {
        for (int64_t b = b0; b < b1; ++b)
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t v0 = c * NU, nv = std::min(NU, H - v0);
            const float* dyr = dy ? dy + (t * B + b) * ldy + v0 : zero_row;
            if (nv == NU)
              cell_backward_chunk(gt + b * G + v0, dh + b * H + v0, dyr, dc + b * H + v0, cprev + b * H + v0,
                             cnext + b * H + v0, dgt + b * G + v0, H);
            else
              cell_backward(gt + b * G + v0, dh + b * H + v0, dyr, dc + b * H + v0, cprev + b * H + v0,
                            cnext + b * H + v0, dgt + b * G + v0, H, nv);
          }
      };
      cells(sh.rb0, sh.rb1, sh.cf0, sh.cf1);
      for (int k = 0; k < sh.parts; ++k) cells(sh.part[k].b0, sh.part[k].b1, sh.part[k].c, sh.part[k].c + 1);
      if (s == 0 && !need_dh0) break;  // dL/dh_initial is discarded: no product, no barrier
      if (!sh.by_rows) barrier.wait();  // the product reads every unit of the rows' gate gradients
      // dL/dh_{t-1} for this member's tiles. The next cell reads only these (no barrier);
      // step t-1's gate gradients go to another slice of dgates than the one read here.
      over_row_blocks(sh.rb0, sh.rb1, [&](int64_t b0, auto r) {
        backward_rows<decltype(r)::value>(dgt, G, P, dh, H, b0, sh.cf0, sh.cf1);
      });
      for (int k = 0; k < sh.parts; ++k) {
        const Piece& pc = sh.part[k];
        over_row_blocks(pc.b0, pc.b1, [&](int64_t b0, auto r) {
          backward_rows<decltype(r)::value>(dgt, G, P, dh, H, b0, pc.c, pc.c + 1);
        });
      }
    }
  });
}

}  // namespace metalnn::cpu

#include "metalnn/backend/cpu/conv_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Vector width in floats for the ISA the build targets; an MR x NV-vector accumulator
// tile plus NV B vectors and a broadcast must fit the register file.
#if defined(__AVX512F__)
constexpr int VW = 16, kRegs = 32;
#elif defined(__AVX__)
constexpr int VW = 8, kRegs = 16;
#else
constexpr int VW = 4, kRegs = 16;
#endif
constexpr int mr_for(int nv) { return (kRegs - 1 - nv) / nv > 24 ? 24 : (kRegs - 1 - nv) / nv / 2 * 2; }
constexpr int kMaxNV = kRegs >= 32 ? 4 : 2;

typedef float vf __attribute__((vector_size(VW * sizeof(float))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }

// c[MR][NV*VW] (row stride ldc) = or += sum_k a(k, :MR) (x) b[k*ldb + :NV*VW], with
// a(k, r) = a[k*lda + r], or a[r*lda + k] for a row-major A read in place (RowA).
template <int MR, int NV, bool RowA = false>
void micro_kernel(int64_t K, const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                  float* c, int64_t ldc, bool accumulate) {
  vf acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int64_t k = 0; k < K; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + k * ldb + v * VW);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const float ar = RowA ? a[r * lda + k] : a[k * lda + r];  // scalar * vector broadcasts
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = c + r * ldc + v * VW;
      store(p, accumulate ? load(p) + acc[r][v] : acc[r][v]);
    }
}

float* grow(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

// Row tiles [t0, t1) against every column panel.
template <int MR, int NV>
void run_tiles(const GemmPlan& g, GemmOperand a, GemmOperand b, float* C, int64_t ldc, bool accumulate,
               bool transpose_c, int64_t t0, int64_t t1) {
  constexpr int NR = NV * VW;
  const int64_t K = g.K;
  alignas(64) float tmp[MR * NR];
  thread_local std::vector<float> edge_a, edge_b;
  for (int64_t n0 = 0; n0 < g.N; n0 += NR) {
    const int64_t nr = std::min<int64_t>(NR, g.N - n0);
    const float* bp = b.ld ? b.data + n0 : b.data + n0 * K;
    int64_t ldb = b.ld ? b.ld : NR;
    if (b.ld && nr < NR) {  // a partial panel read in place: copy it, zero padded
      float* e = grow(edge_b, K * NR);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < NR; ++j) e[k * NR + j] = j < nr ? bp[k * b.ld + j] : 0.f;
      bp = e, ldb = NR;
    }
    for (int64_t m0 = t0 * MR; m0 < std::min(g.M, t1 * MR); m0 += MR) {
      const int64_t mr = std::min<int64_t>(MR, g.M - m0);
      const bool rows = a.ld && a.row_major;
      const float* ap = !a.ld ? a.data + m0 * K : rows ? a.data + m0 * a.ld : a.data + m0;
      int64_t lda = a.ld ? a.ld : MR;
      if (a.ld && mr < MR) {
        float* e = grow(edge_a, K * MR);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t r = 0; r < MR; ++r) e[k * MR + r] = r >= mr ? 0.f : rows ? ap[r * a.ld + k] : ap[k * a.ld + r];
        ap = e, lda = MR;
      }
      const bool row_kernel = rows && mr == MR;
      if (!transpose_c && mr == MR && nr == NR) {
        if (row_kernel) micro_kernel<MR, NV, true>(K, ap, lda, bp, ldb, C + m0 * ldc + n0, ldc, accumulate);
        else micro_kernel<MR, NV>(K, ap, lda, bp, ldb, C + m0 * ldc + n0, ldc, accumulate);
        continue;
      }
      // Edge tiles and transposed stores go through a full-size temporary.
      if (row_kernel) micro_kernel<MR, NV, true>(K, ap, lda, bp, ldb, tmp, NR, false);
      else micro_kernel<MR, NV>(K, ap, lda, bp, ldb, tmp, NR, false);
      if (transpose_c) {
        for (int64_t j = 0; j < nr; ++j) {
          float* c = C + (n0 + j) * ldc + m0;
          for (int64_t r = 0; r < mr; ++r) c[r] = accumulate ? c[r] + tmp[r * NR + j] : tmp[r * NR + j];
        }
      } else {
        for (int64_t r = 0; r < mr; ++r) {
          float* c = C + (m0 + r) * ldc + n0;
          for (int64_t j = 0; j < nr; ++j) c[j] = accumulate ? c[j] + tmp[r * NR + j] : tmp[r * NR + j];
        }
      }
    }
  }
}

// Both operands pack alike: panels of `tile` rows r of an R x K operand, stored
// [panel][k][tile] and zero padded; element (r, k) is src[k * ld + r] when k_major, else src[r * ld + k].
void pack_panels(const float* src, int64_t R, int64_t K, int64_t ld, int64_t tile, bool k_major, float* out) {
  for (int64_t r0 = 0; r0 < R; r0 += tile) {
    float* t = out + r0 * K;
    const int64_t n = std::min<int64_t>(tile, R - r0);
    if (k_major && n == tile) {
      for (int64_t k = 0; k < K; ++k) std::memcpy(t + k * tile, src + k * ld + r0, sizeof(float) * tile);
    } else if (k_major) {
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < tile; ++j) t[k * tile + j] = j < n ? src[k * ld + r0 + j] : 0.f;
    } else {
      for (int64_t j = 0; j < tile; ++j) {
        const float* row = src + (r0 + j) * ld;
        for (int64_t k = 0; k < K; ++k) t[k * tile + j] = j < n ? row[k] : 0.f;
      }
    }
  }
}

template <int MR>
void pack_gather_tiles(const GemmPlan& g, const float* src, const int64_t* m_off, const int64_t* k_off, float* out) {
  const int64_t K = g.K;
  for (int64_t m0 = 0; m0 < g.M; m0 += MR) {
    float* __restrict t = out + m0 * K;
    const int64_t mr = std::min<int64_t>(MR, g.M - m0);
    if (mr < MR) {  // last tile: zero rows past M
      for (int64_t k = 0; k < K; ++k)
        for (int64_t r = 0; r < MR; ++r) t[k * MR + r] = r < mr ? src[m_off[m0 + r] + k_off[k]] : 0.f;
      continue;
    }
    int64_t mo[MR];
    bool run = true;
    for (int r = 0; r < MR; ++r) {
      mo[r] = m_off[m0 + r];
      run = run && mo[r] == mo[0] + r;
    }
    if (run) {  // consecutive offsets: a contiguous copy per k
      for (int64_t k = 0; k < K; ++k) {
        const float* s = src + mo[0] + k_off[k];
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r) t[k * MR + r] = s[r];
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const float* s = src + k_off[k];
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r) t[k * MR + r] = s[mo[r]];
      }
    }
  }
}

}  // namespace

GemmPlan gemm_plan(int64_t M, int64_t N, int64_t K) {
  // The widest panel the N axis fills well; as many rows as the registers then allow.
  int nv = N >= 3 * VW ? 4 : N > VW ? 2 : 1;
  nv = std::min(nv, kMaxNV);
  return GemmPlan{M, N, K, nv == 4 ? mr_for(4) : nv == 2 ? mr_for(2) : mr_for(1), nv * VW};
}

double gemm_cost(const GemmPlan& g, bool transpose_c) {
  const double pm = (double)((g.M + g.mr - 1) / g.mr * g.mr), pn = (double)((g.N + g.nr - 1) / g.nr * g.nr);
  return pm * pn * ((double)g.K + (transpose_c ? 8.0 : 1.0));
}

void gemm_pack_a(const GemmPlan& g, const float* A, int64_t lda, bool trans, float* out) {
  pack_panels(A, g.M, g.K, lda, g.mr, trans, out);
}

void gemm_pack_a_gather(const GemmPlan& g, const float* src, const int64_t* m_off, const int64_t* k_off,
                        float* out) {
  if (g.nr == 4 * VW) pack_gather_tiles<mr_for(4)>(g, src, m_off, k_off, out);
  else if (g.nr == 2 * VW) pack_gather_tiles<mr_for(2)>(g, src, m_off, k_off, out);
  else pack_gather_tiles<mr_for(1)>(g, src, m_off, k_off, out);
}

void gemm_pack_b(const GemmPlan& g, const float* B, int64_t ldb, bool trans, float* out) {
  pack_panels(B, g.N, g.K, ldb, g.nr, !trans, out);
}

void gemm(const GemmPlan& g, GemmOperand a, GemmOperand b, float* C, int64_t ldc, bool accumulate,
          bool transpose_c) {
  if (g.M <= 0 || g.N <= 0) return;
  // Threads split the row tiles; each walks every B panel.
  const int64_t tiles = (g.M + g.mr - 1) / g.mr;
  auto run = [&](int64_t t0, int64_t t1) {
    if (g.nr == 4 * VW) run_tiles<mr_for(4), kMaxNV == 4 ? 4 : 2>(g, a, b, C, ldc, accumulate, transpose_c, t0, t1);
    else if (g.nr == 2 * VW) run_tiles<mr_for(2), 2>(g, a, b, C, ldc, accumulate, transpose_c, t0, t1);
    else run_tiles<mr_for(1), 1>(g, a, b, C, ldc, accumulate, transpose_c, t0, t1);
  };
  const double flops = 2.0 * g.M * g.N * g.K;
  if (tiles < 2 || in_parallel_region() || num_threads() == 1 || flops < 4e6) run(0, tiles);
  else parallel_for(tiles, 1, run);
}

}  // namespace metalnn::cpu

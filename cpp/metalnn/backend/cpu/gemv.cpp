#include "metalnn/backend/cpu/gemv.h"

namespace metalnn::cpu {
namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

inline v8 load8(const float* p) { return *(const v8u*)p; }

inline float hsum(v8 v) {
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

// R rows at once, two vectors each: eight independent sums hide the FMA latency while
// x stays in registers' reach and each weight is read exactly once.
template <int R>
void rows(int64_t F, const float* __restrict x, const float* __restrict W, int64_t ldw, float* __restrict y) {
  v8 a[R][2];
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = v8{};
  int64_t f = 0;
  for (; f + 16 <= F; f += 16) {
    const v8 x0 = load8(x + f), x1 = load8(x + f + 8);
    for (int r = 0; r < R; ++r) {
      a[r][0] += x0 * load8(W + r * ldw + f);
      a[r][1] += x1 * load8(W + r * ldw + f + 8);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(a[r][0] + a[r][1]);
    for (int64_t k = f; k < F; ++k) s += x[k] * W[r * ldw + k];
    y[r] = s;
  }
}

}  // namespace

void gemv_rows(int64_t O, int64_t F, const float* x, const float* W, int64_t ldw, float* y) {
  int64_t o = 0;
  for (; o + 4 <= O; o += 4) rows<4>(F, x, W + o * ldw, ldw, y + o);
  for (; o < O; ++o) rows<1>(F, x, W + o * ldw, ldw, y + o);
}

}  // namespace metalnn::cpu

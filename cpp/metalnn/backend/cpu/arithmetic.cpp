#include "metalnn/backend/cpu/arithmetic.h"

#include <algorithm>
#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// The output's dimensions with size-1 dimensions dropped and neighbours merged where every
// operand walks them as one (both broadcast, or both dense and adjacent). The innermost
// dimension then has stride 1 or 0 in each operand, so rows are plain vector loops.
struct Layout {
  int r = 0;
  int64_t size[4]{}, sa[4]{}, sb[4]{}, sg[4]{};
  int64_t rows() const {
    int64_t n = 1;
    for (int k = 0; k + 1 < r; ++k) n *= size[k];
    return n;
  }
  int64_t inner() const { return size[r - 1]; }
  // Offsets of the first element of row `row` (over dims 0 .. r-2).
  void offsets(int64_t row, int64_t& oa, int64_t& ob, int64_t& og) const {
    oa = ob = og = 0;
    for (int k = r - 2; k >= 0; --k) {
      int64_t c = row % size[k];
      row /= size[k];
      oa += c * sa[k];
      ob += c * sb[k];
      og += c * sg[k];
    }
  }
};

bool mergeable(int64_t outer, int64_t inner, int64_t inner_size) {
  return (outer == 0 && inner == 0) || (outer != 0 && inner != 0 && outer == inner * inner_size);
}

Layout layout(const MnnArithmeticParams& p) {
  Layout l;
  for (int k = 0; k < 4; ++k) {
    if (p.out[k] == 1) continue;
    if (l.r > 0) {
      int j = l.r - 1;
      if (mergeable(l.sa[j], p.a_stride[k], p.out[k]) && mergeable(l.sb[j], p.b_stride[k], p.out[k]) &&
          mergeable(l.sg[j], p.g_stride[k], p.out[k])) {
        l.size[j] *= p.out[k];
        l.sa[j] = p.a_stride[k];
        l.sb[j] = p.b_stride[k];
        l.sg[j] = p.g_stride[k];
        continue;
      }
    }
    l.size[l.r] = p.out[k];
    l.sa[l.r] = p.a_stride[k];
    l.sb[l.r] = p.b_stride[k];
    l.sg[l.r] = p.g_stride[k];
    ++l.r;
  }
  if (l.r == 0) {  // a single element
    l.r = 1;
    l.size[0] = 1;
  }
  return l;
}

// Float pointer to n (dense) or 1 (broadcast) elements of t at offset.
const float* load(const Tensor& t, int64_t offset, bool dense, int64_t n, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + offset;
  const int64_t m = dense ? n : 1;
  scratch.resize((size_t)m);
  half_to_float_n(t.data<uint16_t>() + offset, scratch.data(), (size_t)m);
  return scratch.data();
}

void store(const float* src, const Tensor& t, int64_t offset, int64_t n) {
  if (t.dtype() == DType::float32) std::copy(src, src + n, t.data<float>() + offset);
  else float_to_half_n(src, t.data<uint16_t>() + offset, (size_t)n);
}

// y[i] = f(a[i or 0], b[i or 0]) with the broadcast choice hoisted out of the loop.
template <class F>
void combine(const float* a, bool va, const float* b, bool vb, float* y, int64_t n, F f) {
  if (va && vb) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
  } else if (va) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
  } else if (vb) {
    const float av = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
  } else {
    std::fill(y, y + n, f(a[0], b[0]));
  }
}

template <class Fn>
void with_op(uint32_t op, Fn&& fn) {
  switch (op) {
    case MNN_ARITH_ADD: return fn([](float a, float b) { return a + b; });
    case MNN_ARITH_SUBTRACT: return fn([](float a, float b) { return a - b; });
    case MNN_ARITH_MULTIPLY: return fn([](float a, float b) { return a * b; });
    default: return fn([](float a, float b) { return a / b; });
  }
}

// The gradient term of each element of one row: t = dy * d(a op b)/d(operand).
void term_row(const MnnArithmeticParams& p, const float* dy, const float* a, bool va, const float* b, bool vb,
              float* t, int64_t n) {
  const bool first = p.operand == 0;
  switch (p.op) {
    case MNN_ARITH_ADD: std::copy(dy, dy + n, t); return;
    case MNN_ARITH_SUBTRACT:
      if (first) std::copy(dy, dy + n, t);
      else
        for (int64_t i = 0; i < n; ++i) t[i] = -dy[i];
      return;
    case MNN_ARITH_MULTIPLY:
      if (first) combine(dy, true, b, vb, t, n, [](float g, float bv) { return g * bv; });
      else combine(dy, true, a, va, t, n, [](float g, float av) { return g * av; });
      return;
    default:
      if (first) {
        combine(dy, true, b, vb, t, n, [](float g, float bv) { return g / bv; });
      } else {
        // -dy * a / b^2, in the order the GPU kernels use.
        for (int64_t i = 0; i < n; ++i) {
          const float av = a[va ? i : 0], bv = b[vb ? i : 0];
          t[i] = -(dy[i] * av) / (bv * bv);
        }
      }
  }
}

}  // namespace

void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p) {
  const Layout l = layout(p);
  const int64_t rows = l.rows(), n = l.inner();
  const bool va = l.sa[l.r - 1] != 0, vb = l.sb[l.r - 1] != 0;
  with_op(p.op, [&](auto f) {
    parallel_for(rows, std::max<int64_t>(1, (1 << 15) / n), [&](int64_t begin, int64_t end) {
      std::vector<float> sa, sb, out(y.dtype() == DType::float32 ? 0 : (size_t)n);
      for (int64_t row = begin; row < end; ++row) {
        int64_t oa, ob, og;
        l.offsets(row, oa, ob, og);
        const float* pa = load(a, oa, va, n, sa);
        const float* pb = load(b, ob, vb, n, sb);
        float* py = y.dtype() == DType::float32 ? y.data<float>() + row * n : out.data();
        combine(pa, va, pb, vb, py, n, f);
        if (y.dtype() != DType::float32) store(py, y, row * n, n);
      }
    });
  });
}

void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p) {
  const Layout l = layout(p);
  const int64_t rows = l.rows(), n = l.inner();
  const bool va = l.sa[l.r - 1] != 0, vb = l.sb[l.r - 1] != 0, vg = l.sg[l.r - 1] != 0;
  // One pass over a block of rows into `acc` (g's float32 image, or a block's partial sums).
  auto run_rows = [&](int64_t begin, int64_t end, float* acc, int64_t base) {
    std::vector<float> sd, sa, sb, t((size_t)n);
    for (int64_t row = begin; row < end; ++row) {
      int64_t oa, ob, og;
      l.offsets(row, oa, ob, og);
      const float* pd = load(dy, row * n, true, n, sd);
      const float* pa = load(a, oa, va, n, sa);
      const float* pb = load(b, ob, vb, n, sb);
      term_row(p, pd, pa, va, pb, vb, t.data(), n);
      float* out = acc + (og - base);
      if (vg) {
        for (int64_t i = 0; i < n; ++i) out[i] += t[(size_t)i];
      } else {
        float s = 0.f;
        for (int64_t i = 0; i < n; ++i) s += t[(size_t)i];
        out[0] += s;
      }
    }
  };
  const int64_t gn = g.numel();
  if (p.reduce_count == 1) {  // g has the output's shape: rows write disjoint parts of g
    parallel_for(rows, std::max<int64_t>(1, (1 << 15) / n), [&](int64_t begin, int64_t end) {
      std::vector<float> acc((size_t)((end - begin) * n), 0.f);
      run_rows(begin, end, acc.data(), begin * n);
      store(acc.data(), g, begin * n, (end - begin) * n);
    });
    return;
  }
  std::vector<float> acc((size_t)gn, 0.f);
  const int64_t per0 = l.r > 1 ? rows / l.size[0] : rows;  // rows per index of the outermost dimension
  if (l.r > 1 && l.sg[0] != 0) {
    // The outermost dimension is kept: each of its indices owns distinct gradient elements.
    parallel_for(l.size[0], std::max<int64_t>(1, (1 << 15) / (per0 * n)), [&](int64_t begin, int64_t end) {
      run_rows(begin * per0, end * per0, acc.data(), 0);
    });
  } else {
    // Reduced outermost dimension: fixed blocks (independent of the thread count, so the
    // sums do not depend on it) with their own partial sums, added in block order.
    const int64_t outer = l.r > 1 ? l.size[0] : 1;
    const int64_t blocks = std::min<int64_t>(outer, 16);
    std::vector<std::vector<float>> partial((size_t)blocks);
    parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        partial[(size_t)k].assign((size_t)gn, 0.f);
        run_rows(outer * k / blocks * per0, outer * (k + 1) / blocks * per0, partial[(size_t)k].data(), 0);
      }
    });
    for (const auto& part : partial)
      for (int64_t i = 0; i < gn; ++i) acc[(size_t)i] += part[(size_t)i];
  }
  store(acc.data(), g, 0, gn);
}

}  // namespace metalnn::cpu

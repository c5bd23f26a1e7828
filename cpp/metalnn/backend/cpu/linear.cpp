#include "metalnn/backend/cpu/linear.h"

#include <algorithm>
#include <vector>

#include "metalnn/backend/cpu/blas.h"
#include "metalnn/backend/cpu/conv_epilogue.h"
#include "metalnn/backend/cpu/conv_gemm.h"
#include "metalnn/backend/cpu/conv_storage.h"
#include "metalnn/backend/cpu/gemv.h"
#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Sixteen running sums, so the loop vectorises without reassociation flags.
inline float sum_row(const float* p, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < n; ++i) s += p[i];
  return s;
}

// z[n, o] = half-accumulated sum over f in order, then + bias; y = half(f(z)) (float16 storage).
void forward_half(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                  const MnnFullyConnectedParams& p, const Epilogue& ep) {
  const std::vector<float> xf = to_float_vector(x), wf = to_float_vector(w);
  const std::vector<float> bf = p.has_bias ? to_float_vector(bias) : std::vector<float>();
  const int64_t F = p.in_features, O = p.out_features;
  uint16_t* out = y.data<uint16_t>();
  parallel_for((int64_t)p.batch * O, 16, [&](int64_t b, int64_t e) {
    std::vector<float> z((size_t)(e - b));  // this chunk's z, finished by the epilogue
    for (int64_t no = b; no < e; ++no) {
      const float* xn = xf.data() + (no / O) * F;
      const float* wo = wf.data() + (no % O) * F;
      float acc = 0.f;
      for (int64_t f = 0; f < F; ++f) acc = round_to_half(acc + xn[f] * wo[f]);
      if (p.has_bias) acc = round_to_half(acc + bf[no % O]);
      z[no - b] = acc;
    }
    ep.finish(z.data(), e - b, b);
    float_to_half_n(z.data(), out + b, (size_t)(e - b));
  });
}

// dx[n, f] = half-accumulated sum over o in order (float16 storage).
void backward_input_half(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnFullyConnectedParams& p) {
  const std::vector<float> dyf = to_float_vector(dy), wf = to_float_vector(w);
  const int64_t F = p.in_features, O = p.out_features;
  uint16_t* out = dx.data<uint16_t>();
  parallel_for((int64_t)p.batch, 1, [&](int64_t b, int64_t e) {
    std::vector<float> acc((size_t)F);
    for (int64_t n = b; n < e; ++n) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t o = 0; o < O; ++o) {
        const float d = dyf[n * O + o];
        const float* wo = wf.data() + o * F;
        for (int64_t f = 0; f < F; ++f) acc[f] = round_to_half(acc[f] + d * wo[f]);
      }
      float_to_half_n(acc.data(), out + n * F, (size_t)F);
    }
  });
}

// dx (N x F) = dy (N x O) * W (O x F), float32. W is read in place as the product's B
// operand (BLAS repacks the large weight matrix on every call); dy is packed once.
// Threads split the columns in whole register panels, so each streams its part of W once.
void backward_input_f32(const float* dy, const float* w, float* dx, int64_t N, int64_t F, int64_t O) {
  const GemmPlan plan = gemm_plan(N, F, O);
  thread_local std::vector<float> buffer;  // the caller's: workers get the pointer, not their own
  if ((int64_t)buffer.size() < plan.a_size()) buffer.resize((size_t)plan.a_size());
  float* packed = buffer.data();
  gemm_pack_a(plan, dy, O, false, packed);
  const int64_t panels = (F + plan.nr - 1) / plan.nr;
  const int64_t grain = std::max<int64_t>(1, (int64_t)(4e6 / (2.0 * N * O * plan.nr)));
  parallel_for(panels, grain, [&](int64_t p0, int64_t p1) {
    GemmPlan sub = plan;
    const int64_t f0 = p0 * plan.nr;
    sub.N = std::min(F, p1 * plan.nr) - f0;
    gemm(sub, {packed, 0}, {w + f0, F}, dx + f0, F, false, false);
  });
}

// y (N x F -> N x O) = x * W^T computed as y^T = W * x^T: W (O x F) is read in place as the
// row-major A operand (no per-call repacking of the large matrix); x^T is packed per K
// chunk, small enough to stay in L2 while W streams through. Threads split W's rows.
void forward_f32(const float* x, const float* w, float* y, int64_t N, int64_t F, int64_t O) {
  constexpr int64_t kChunk = 1024;
  thread_local std::vector<float> buffer;  // the caller's; gemm hands workers the pointer
  for (int64_t k0 = 0; k0 < F; k0 += kChunk) {
    const GemmPlan plan = gemm_plan(O, N, std::min(kChunk, F - k0));
    if ((int64_t)buffer.size() < plan.b_size()) buffer.resize((size_t)plan.b_size());
    gemm_pack_b(plan, x + k0, F, true, buffer.data());
    gemm(plan, {w + k0, F, true}, {buffer.data(), 0}, y, O, k0 > 0, true);
  }
}

}  // namespace

void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  Epilogue ep{nullptr, neuron, pre.defined() ? &pre : nullptr};
  if (p.accumulation == MNN_ACCUMULATE_HALF) {
    forward_half(x, w, bias, y, p, ep);
    return;
  }
  const int64_t N = p.batch, F = p.in_features, O = p.out_features;
  FloatView xf(x), wf(w), bf(p.has_bias ? bias : Tensor());
  ep.bias = bf.get();
  FloatOut out(y);
  float* yf = out.get();
  // Panel [n0, n1) x [o0, o1) of y, finished by the epilogue while it is still in cache.
  auto panel = [&](int64_t n0, int64_t n1, int64_t o0, int64_t o1) {
    if (n1 - n0 == 1)  // batch 1: stream the weights once (a GEMM would pack them first)
      gemv_rows(o1 - o0, F, xf.get() + n0 * F, wf.get() + o0 * F, F, yf + n0 * O + o0);
    else
      sgemm(false, true, n1 - n0, o1 - o0, F, 1.f, xf.get() + n0 * F, F, wf.get() + o0 * F, F, 0.f,
            yf + n0 * O + o0, O);
    for (int64_t n = n0; n < n1; ++n) ep.feature_row(yf + n * O + o0, o1 - o0, n * O + o0, o0);
  };
  if (N > 1 && N <= 256 && O >= 64 && F >= 256) {  // a weight matrix that dwarfs the batch (N = 1: gemv)
    forward_f32(xf.get(), wf.get(), yf, N, F, O);
    for (int64_t n = 0; n < N; ++n) ep.feature_row(yf + n * O, O, n * O, 0);
    out.finish();
    return;
  }
  // Split the longer of N and O over the threads, as sgemm_parallel would for the product alone.
  const int threads = num_threads();
  if (threads == 1 || in_parallel_region() || 2.0 * N * O * F < 4e6) {
    panel(0, N, 0, O);
  } else if (N >= O) {
    parallel_for(N, std::max<int64_t>(8, N / (threads * 2)), [&](int64_t n0, int64_t n1) { panel(n0, n1, 0, O); });
  } else {
    parallel_for(O, std::max<int64_t>(16, O / (threads * 2)), [&](int64_t o0, int64_t o1) { panel(0, N, o0, o1); });
  }
  out.finish();
}

void fully_connected_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const MnnFullyConnectedParams& p) {
  if (p.accumulation == MNN_ACCUMULATE_HALF) {
    backward_input_half(dy, w, dx, p);
    return;
  }
  const int64_t N = p.batch, F = p.in_features, O = p.out_features;
  FloatView dyf(dy), wf(w);
  FloatOut out(dx);
  // Short products (few rows) lose to BLAS's packing less than they gain from in-place W.
  if (N >= 16 && O >= 64) backward_input_f32(dyf.get(), wf.get(), out.get(), N, F, O);
  else sgemm_parallel(false, false, N, F, O, 1.f, dyf.get(), O, wf.get(), F, 0.f, out.get(), F);
  out.finish();
}

void fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                                     const MnnFullyConnectedParams& p) {
  const int64_t N = p.batch, F = p.in_features, O = p.out_features;
  FloatView dyf(dy), xf(x);
  FloatOut out(dw);
  // Both operands read in place (dy^T k-major, x row by row): nothing is packed.
  if (N <= 256 && O >= 64 && F >= 256)
    gemm(gemm_plan(O, F, N), {dyf.get(), O}, {xf.get(), F}, out.get(), F, false, false);
  else
    sgemm_parallel(true, false, O, F, N, 1.f, dyf.get(), O, xf.get(), F, 0.f, out.get(), F);
  out.finish();
}

void bias_backward(const Tensor& dy, const Tensor& db, int64_t N, int64_t O, int64_t inner) {
  FloatView dyf(dy);
  FloatOut out(db);
  float* acc = out.get();
  const float* d = dyf.get();
  if (inner == 1) {
    // Rows of O: add them up in batch order, vectorised along O.
    std::fill(acc, acc + O, 0.f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) acc[o] += d[n * O + o];
  } else {
    parallel_for(O, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, N * inner)), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        float s = 0.f;
        for (int64_t n = 0; n < N; ++n) s += sum_row(d + (n * O + o) * inner, inner);
        acc[o] = s;
      }
    });
  }
  out.finish();
}

}  // namespace metalnn::cpu

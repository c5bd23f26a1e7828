#include <utility>

#include "metalnn/backend/cuda/blas.h"
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/rnn.h"

namespace metalnn::cuda {
namespace {

// ---------------------------------------------------------------- device math (as backend/cpu/rnn.cpp)

__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }

// Per step: pointers to this step's slices. Rows b with time >= lengths[b] are inactive.
struct StepPtrs {
  float* gates;        // (B, G*H) this step's gate rows (activations after the forward kernel)
  float* dgates;       // backward: their gradients
  const float* hp;     // state before the step (B, H)
  float* hn;           // state after the step
  const float* cp;
  float* cn;
  float* rh;           // GRU/MGU: gate0 * h_prev of this step
  float* y;            // first output element of the step (row stride p.y_stride)
  const float* dy;     // backward: output gradient of the step (null: zero)
  const float* bias;
  const float* peep;
  const int32_t* lengths;
  const float* dh;     // backward: dL/dh after the step (B, H)
  const float* dc;
  float* dhp;          // backward: dL/dh_prev except the part through U
  float* dcp;
  const float* drh;
};

__device__ __forceinline__ bool active(const StepPtrs& q, const MnnRnnStepParams& p, int64_t b) {
  return !q.lengths || p.time < q.lengths[b];
}

// u: the weight of h_prev in the GRU/MGU output mix; sign = du/d(gate).
__device__ __forceinline__ float mix_weight(const float* g, const MnnRnnStepParams& p, int64_t j, float& sign) {
  const bool gru = p.cell == MNN_RNN_GRU, one_minus = gru == (p.flip_output_gates != 0);
  const float ug = g[(gru ? p.hidden : 0u) + j];
  sign = one_minus ? -1.f : 1.f;
  return one_minus ? 1.f - ug : ug;
}

__global__ void forward_step(StepPtrs q, MnnRnnStepParams p) {
  const int64_t H = p.hidden, G = p.gates, n = (int64_t)p.batch * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    float* g = q.gates + b * G * H;
    float* yr = q.y + b * p.y_stride;
    if (!active(q, p, b)) {
      q.hn[e] = q.hp[e];
      if (p.cell == MNN_RNN_LSTM) q.cn[e] = q.cp[e];
      yr[j] = 0.f;
      if (p.cell == MNN_RNN_LSTM || p.cell == MNN_RNN_SINGLE_GATE)
        for (int64_t k = 0; k < G; ++k) g[k * H + j] = 0.f;
      continue;
    }
    float h;
    if (p.cell == MNN_RNN_SINGLE_GATE) {
      const float a = g[j] + q.bias[j];
      h = p.activation == MNN_RNN_RELU ? (a < 0.f ? 0.f : a) : p.activation == MNN_RNN_SIGMOID ? sigm(a) : tanhf(a);
      g[j] = h;
    } else if (p.cell == MNN_RNN_LSTM) {
      const float c0 = q.cp[e];
      float ai = g[j] + q.bias[j], af = g[H + j] + q.bias[H + j];
      if (p.peephole) {
        ai += q.peep[j] * c0;
        af += q.peep[H + j] * c0;
      }
      const float i = sigm(ai), f = sigm(af), gg = tanhf(g[2 * H + j] + q.bias[2 * H + j]);
      const float c = f * c0 + i * gg;
      float ao = g[3 * H + j] + q.bias[3 * H + j];
      if (p.peephole) ao += q.peep[2 * H + j] * c;
      const float o = sigm(ao);
      h = o * tanhf(c);
      g[j] = i;
      g[H + j] = f;
      g[2 * H + j] = gg;
      g[3 * H + j] = o;
      q.cn[e] = c;
    } else {  // GRU/MGU after the candidate product
      const int64_t nsig = (G - 1) * H;
      float sign;
      const float u = mix_weight(g, p, j, sign);
      const float nn = tanhf(g[nsig + j] + q.bias[nsig + j]);
      h = u * q.hp[e] + (1.f - u) * nn;
      g[nsig + j] = nn;
    }
    q.hn[e] = h;
    yr[j] = h;
  }
}

// GRU/MGU after the gate product: sigmoid gates, rh = gate0 * h_prev.
__global__ void gated_forward1(StepPtrs q, MnnRnnStepParams p) {
  const int64_t H = p.hidden, G = p.gates, n = (int64_t)p.batch * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    float* g = q.gates + b * G * H;
    if (!active(q, p, b)) {
      for (int64_t k = 0; k < G; ++k) g[k * H + j] = 0.f;
      q.rh[e] = 0.f;
      continue;
    }
    for (int64_t k = 0; k + 1 < G; ++k) g[k * H + j] = sigm(g[k * H + j] + q.bias[k * H + j]);
    q.rh[e] = g[j] * q.hp[e];
  }
}

__global__ void backward_step(StepPtrs q, MnnRnnStepParams p) {
  const int64_t H = p.hidden, G = p.gates, n = (int64_t)p.batch * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    float* d = q.dgates + b * G * H;
    const float* g = q.gates + b * G * H;
    if (!active(q, p, b)) {
      for (int64_t k = 0; k < G; ++k) d[k * H + j] = 0.f;
      q.dhp[e] = q.dh[e];
      if (p.cell == MNN_RNN_LSTM) q.dcp[e] = q.dc[e];
      continue;
    }
    const float dht = q.dh[e] + (q.dy ? q.dy[b * p.y_stride + j] : 0.f);
    if (p.cell == MNN_RNN_SINGLE_GATE) {
      const float h = g[j];
      const float slope = p.activation == MNN_RNN_RELU ? (h > 0.f ? 1.f : 0.f)
                          : p.activation == MNN_RNN_SIGMOID ? h * (1.f - h) : 1.f - h * h;
      d[j] = dht * slope;
      q.dhp[e] = 0.f;
    } else if (p.cell == MNN_RNN_LSTM) {
      const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const float c0 = q.cp[e], c1 = q.cn[e];
      const float tc = tanhf(c1);
      const float dao = dht * tc * o * (1.f - o);
      float dct = q.dc[e] + dht * o * (1.f - tc * tc);
      if (p.peephole) dct += dao * q.peep[2 * H + j];
      const float dai = dct * gg * i * (1.f - i), daf = dct * c0 * f * (1.f - f), dag = dct * i * (1.f - gg * gg);
      float dcprev = dct * f;
      if (p.peephole) dcprev += dai * q.peep[j] + daf * q.peep[H + j];
      d[j] = dai;
      d[H + j] = daf;
      d[2 * H + j] = dag;
      d[3 * H + j] = dao;
      q.dcp[e] = dcprev;
      q.dhp[e] = 0.f;
    } else {  // GRU/MGU part 1
      const int64_t nsig = (G - 1) * H;
      const bool gru = p.cell == MNN_RNN_GRU;
      float sign;
      const float u = mix_weight(g, p, j, sign);
      const float nn = g[nsig + j];
      const float du = dht * (q.hp[e] - nn);
      if (gru) d[j] = 0.f;
      d[nsig + j] = dht * (1.f - u) * (1.f - nn * nn);
      d[(gru ? H : 0) + j] = sign * du;
      q.dhp[e] = dht * u;
    }
  }
}

// GRU/MGU part 2, after drh = da_n U_n.
__global__ void gated_backward2(StepPtrs q, MnnRnnStepParams p) {
  const int64_t H = p.hidden, G = p.gates, n = (int64_t)p.batch * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    if (!active(q, p, b)) continue;
    float* d = q.dgates + b * G * H;
    const float* g = q.gates + b * G * H;
    const float dr = q.drh[e];
    d[j] += dr * q.hp[e];
    q.dhp[e] += dr * g[j];
    for (int64_t k = 0; k + 1 < G; ++k) d[k * H + j] *= g[k * H + j] * (1.f - g[k * H + j]);
  }
}

__global__ void column_sums(const float* a, int64_t rows, int64_t cols, float* out) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols; c += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int64_t r = 0; r < rows; ++r) s += a[r * cols + c];
    out[c] = s;
  }
}

__global__ void peephole_backward(const float* dg, const float* cp, const float* c_last, float* dp, int64_t T,
                                  int64_t B, int64_t H, bool reverse) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < H; j += (int64_t)gridDim.x * blockDim.x) {
    float si = 0.f, sf = 0.f, so = 0.f;
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = reverse ? T - 1 - s : s, tn = reverse ? T - 2 - s : s + 1;
      for (int64_t b = 0; b < B; ++b) {
        const float* d = dg + (t * B + b) * 4 * H;
        const float c0 = cp[(t * B + b) * H + j];
        const float c1 = s + 1 < T ? cp[(tn * B + b) * H + j] : c_last[b * H + j];
        si += d[j] * c0;
        sf += d[H + j] * c0;
        so += d[3 * H + j] * c1;
      }
    }
    dp[j] = si;
    dp[H + j] = sf;
    dp[2 * H + j] = so;
  }
}

template <class In, class Out>
__global__ void convert(const In* in, Out* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(out, i, load(in, i));
}

__global__ void fill_zero(float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = 0.f;
}

// ---------------------------------------------------------------- host side

const Device kCuda{DeviceType::cuda, 0};

Tensor f32(const Shape& s) { return Tensor::empty(s, DType::float32, kCuda); }

// n elements from src (float32 or float16) into dst (float32 or float16).
void copy(const char* op, const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (n == 0) return;
  cudaStream_t s = current_stream();
  if (st == DType::float32 && dt == DType::float32)
    convert<<<grid_for(n), kBlock, 0, s>>>(static_cast<const float*>(src), static_cast<float*>(dst), n);
  else if (st == DType::float16 && dt == DType::float32)
    convert<<<grid_for(n), kBlock, 0, s>>>(static_cast<const __half*>(src), static_cast<float*>(dst), n);
  else if (st == DType::float32 && dt == DType::float16)
    convert<<<grid_for(n), kBlock, 0, s>>>(static_cast<const float*>(src), static_cast<__half*>(dst), n);
  else
    convert<<<grid_for(n), kBlock, 0, s>>>(static_cast<const __half*>(src), static_cast<__half*>(dst), n);
  check_launch(op);
}

void zero(const char* op, float* dst, int64_t n) {
  fill_zero<<<grid_for(n), kBlock, 0, current_stream()>>>(dst, n);
  check_launch(op);
}

// A float32 device copy of t (t itself when float32); keeps the copy alive in `keep`.
const float* widened(const char* op, const Tensor& t, std::vector<Tensor>& keep) {
  if (!t.defined()) return nullptr;
  if (t.dtype() == DType::float32) return t.data<float>();
  keep.push_back(f32(t.shape()));
  copy(op, t.raw(), t.dtype(), keep.back().raw(), DType::float32, t.numel());
  return keep.back().data<float>();
}

void load_state(const char* op, const Tensor& src, float* dst, int64_t n) {
  if (src.defined())
    copy(op, src.raw(), src.dtype(), dst, DType::float32, n);
  else
    zero(op, dst, n);
}

// Row-major C (M x N, ldc) = op(A) op(B) + beta C through the column-major cuBLAS wrapper:
// C^T = op(B)^T op(A)^T, so the operands swap.
void rgemm(const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  gemm(op, tb, ta, (int)N, (int)M, (int)K, B, (int)ldb, 0, A, (int)lda, 0, C, (int)ldc, 0, 1, false, false, beta);
}

float* ptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

struct Layer {
  const RnnLayerDescriptor* ld;
  int64_t T, B, I, H, G;
  bool reverse;
  const float *W, *U, *bias, *peep;
  float *gates, *hp, *cp, *rh, *h_last, *c_last;
  const int32_t* lengths;

  int64_t time_of(int64_t s) const { return reverse ? T - 1 - s : s; }
  bool gated() const { return ld->cell == MNN_RNN_GRU || ld->cell == MNN_RNN_MGU; }
  float* h_after(int64_t s) const { return s + 1 < T ? hp + time_of(s + 1) * B * H : h_last; }
  float* c_after(int64_t s) const { return s + 1 < T ? cp + time_of(s + 1) * B * H : c_last; }
  MnnRnnStepParams params(int64_t s, int64_t ldy) const {
    MnnRnnStepParams p{};
    p.cell = ld->cell;
    p.activation = ld->activation;
    p.batch = (uint32_t)B;
    p.hidden = (uint32_t)H;
    p.gates = (uint32_t)G;
    p.peephole = ld->peephole;
    p.flip_output_gates = ld->flip_output_gates;
    p.has_lengths = lengths != nullptr;
    p.time = (int32_t)time_of(s);
    p.y_stride = (uint32_t)ldy;
    return p;
  }
  StepPtrs step(int64_t s) const {
    const int64_t t = time_of(s);
    StepPtrs q{};
    q.gates = gates + t * B * G * H;
    q.hp = hp + t * B * H;
    q.hn = h_after(s);
    if (cp) {
      q.cp = cp + t * B * H;
      q.cn = c_after(s);
    }
    if (rh) q.rh = rh + t * B * H;
    q.bias = bias;
    q.peep = peep;
    q.lengths = lengths;
    return q;
  }
};

Layer make_layer(const char* op, const RnnDescriptor& d, const RnnState& st, size_t l, int dir,
                 const std::vector<Tensor>& w, size_t wi, std::vector<Tensor>& keep) {
  const RnnLayerDescriptor& ld = d.layers[l];
  const RnnLayerBuffers& b = st.buffers[l * (size_t)d.directions() + (size_t)dir];
  Layer L{&ld, st.x_shape[0], st.x_shape[1], ld.input_size, ld.hidden_size, ld.gates(), dir == 1,
          widened(op, w[wi], keep), widened(op, w[wi + 1], keep), widened(op, w[wi + 2], keep),
          ld.peephole ? widened(op, w[wi + 3], keep) : nullptr, ptr(b.gates), ptr(b.hp), ptr(b.cp), ptr(b.rh),
          ptr(b.h_last), ptr(b.c_last), st.lengths.defined() ? st.lengths.data<int32_t>() : nullptr};
  return L;
}

size_t weights_per_layer(const RnnLayerDescriptor& ld) { return ld.peephole ? 4 : 3; }

void layer_forward(const char* op, const Layer& L, const float* x, float* y, int64_t ldy) {
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, GH = L.G * H, nsig = (L.G - 1) * H, n = B * H;
  cudaStream_t st = current_stream();
  rgemm(op, false, true, T * B, GH, I, x, I, L.W, I, 0.f, L.gates, GH);
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = L.time_of(s);
    StepPtrs q = L.step(s);
    q.y = y + t * B * ldy;
    const MnnRnnStepParams p = L.params(s, ldy);
    if (!L.gated()) {
      rgemm(op, false, true, B, GH, H, q.hp, H, L.U, H, 1.f, q.gates, GH);
    } else {
      rgemm(op, false, true, B, nsig, H, q.hp, H, L.U, H, 1.f, q.gates, GH);
      gated_forward1<<<grid_for(n), kBlock, 0, st>>>(q, p);
      check_launch(op);
      rgemm(op, false, true, B, H, H, q.rh, H, L.U + nsig * H, H, 1.f, q.gates + nsig, GH);
    }
    forward_step<<<grid_for(n), kBlock, 0, st>>>(q, p);
    check_launch(op);
  }
}

void layer_backward(const char* op, const Layer& L, const float* x, const float* dy, int64_t ldy, float*& dh,
                    float*& dc, float* dx, bool dx_accumulate, float* const* grads, std::vector<Tensor>& keep) {
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, GH = L.G * H, nsig = (L.G - 1) * H, R = T * B, n = B * H;
  cudaStream_t st = current_stream();
  keep.push_back(f32({T, B, GH}));
  float* dgates = keep.back().data<float>();
  keep.push_back(f32({3, B, H}));
  float *dhp = keep.back().data<float>(), *dcp = dhp + B * H, *drh = dcp + B * H;
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = L.time_of(s);
    StepPtrs q = L.step(s);
    q.dgates = dgates + t * B * GH;
    q.dy = dy ? dy + t * B * ldy : nullptr;
    q.dh = dh;
    q.dc = dc;
    q.dhp = dhp;
    q.dcp = dcp;
    q.drh = drh;
    const MnnRnnStepParams p = L.params(s, ldy);
    backward_step<<<grid_for(n), kBlock, 0, st>>>(q, p);
    check_launch(op);
    if (L.gated()) {
      rgemm(op, false, false, B, H, H, q.dgates + nsig, GH, L.U + nsig * H, H, 0.f, drh, H);
      gated_backward2<<<grid_for(n), kBlock, 0, st>>>(q, p);
      check_launch(op);
    }
    rgemm(op, false, false, B, H, L.gated() ? nsig : GH, q.dgates, GH, L.U, H, 1.f, dhp, H);
    std::swap(dh, dhp);
    if (L.ld->cell == MNN_RNN_LSTM) std::swap(dc, dcp);
  }
  rgemm(op, true, false, GH, I, R, dgates, GH, x, I, 0.f, grads[0], I);
  if (!L.gated()) {
    rgemm(op, true, false, GH, H, R, dgates, GH, L.hp, H, 0.f, grads[1], H);
  } else {
    rgemm(op, true, false, nsig, H, R, dgates, GH, L.hp, H, 0.f, grads[1], H);
    rgemm(op, true, false, H, H, R, dgates + nsig, GH, L.rh, H, 0.f, grads[1] + nsig * H, H);
  }
  column_sums<<<grid_for(GH), kBlock, 0, st>>>(dgates, R, GH, grads[2]);
  check_launch(op);
  if (L.peep) {
    peephole_backward<<<grid_for(H), kBlock, 0, st>>>(dgates, L.cp, L.c_last, grads[3], T, B, H, L.reverse);
    check_launch(op);
  }
  rgemm(op, false, false, R, I, GH, dgates, GH, L.W, I, dx_accumulate ? 1.f : 0.f, dx, I);
}

}  // namespace

void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last) {
  const char* op = "rnn_forward";
  const int D = d.directions();
  const int64_t B = x.dim(1);
  std::vector<Tensor> keep;
  const float* in = widened(op, x, keep);
  const bool y_f32 = y.dtype() == DType::float32;
  size_t wi = 0;
  for (size_t l = 0; l < d.layers.size(); ++l) {
    const RnnLayerDescriptor& ld = d.layers[l];
    const int64_t H = ld.hidden_size;
    const bool top = l + 1 == d.layers.size();
    if (top && !y_f32) keep.push_back(f32(y.shape()));
    float* out = !top ? st.layer_outputs[l].data<float>() : (y_f32 ? y.data<float>() : keep.back().data<float>());
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = l * (size_t)D + (size_t)dir;
      Layer L = make_layer(op, d, st, l, dir, w, wi, keep);
      wi += weights_per_layer(ld);
      const int64_t first = L.time_of(0) * B * H;
      load_state(op, h0.empty() ? Tensor() : h0[k], L.hp + first, B * H);
      if (L.cp) load_state(op, c0.empty() ? Tensor() : c0[k], L.cp + first, B * H);
      layer_forward(op, L, in, out + dir * H, D * H);
      copy(op, L.h_last, DType::float32, h_last[k].raw(), h_last[k].dtype(), B * H);
      if (L.c_last) copy(op, L.c_last, DType::float32, c_last[k].raw(), c_last[k].dtype(), B * H);
    }
    if (top && !y_f32) copy(op, out, DType::float32, y.raw(), y.dtype(), y.numel());
    in = out;
  }
}

void rnn_backward(const RnnDescriptor& d, const Tensor& x, const Tensor& dy, const std::vector<Tensor>& dh_last,
                  const std::vector<Tensor>& dc_last, const std::vector<Tensor>& w, const RnnState& st,
                  const Tensor& dx, const std::vector<Tensor>& dw, const std::vector<Tensor>& dh0,
                  const std::vector<Tensor>& dc0) {
  const char* op = "rnn_backward";
  const int D = d.directions();
  const int64_t T = x.dim(0), B = x.dim(1);
  std::vector<Tensor> keep;
  const float* xf = widened(op, x, keep);
  const float* upper = widened(op, dy, keep);
  std::vector<size_t> first_weight;
  for (size_t l = 0, wi = 0; l < d.layers.size(); ++l) {
    first_weight.push_back(wi);
    wi += weights_per_layer(d.layers[l]) * (size_t)D;
  }
  for (size_t li = d.layers.size(); li-- > 0;) {
    const RnnLayerDescriptor& ld = d.layers[li];
    const int64_t H = ld.hidden_size, I = ld.input_size;
    const float* in = li == 0 ? xf : st.layer_outputs[li - 1].data<float>();
    float* lower;
    if (li == 0 && dx.dtype() == DType::float32) {
      lower = dx.data<float>();
    } else {
      keep.push_back(f32({T, B, I}));
      lower = keep.back().data<float>();
    }
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = li * (size_t)D + (size_t)dir;
      const size_t wi = first_weight[li] + (size_t)dir * weights_per_layer(ld);
      Layer L = make_layer(op, d, st, li, dir, w, wi, keep);
      keep.push_back(f32({2, B, H}));
      float *dh = keep.back().data<float>(), *dc = dh + B * H;
      load_state(op, dh_last.empty() ? Tensor() : dh_last[k], dh, B * H);
      load_state(op, dc_last.empty() ? Tensor() : dc_last[k], dc, B * H);
      float* grads[4] = {};
      for (size_t j = 0; j < weights_per_layer(ld); ++j) {
        const Tensor& g = dw[wi + j];
        if (g.dtype() == DType::float32) {
          grads[j] = g.data<float>();
        } else {
          keep.push_back(f32(g.shape()));
          grads[j] = keep.back().data<float>();
        }
      }
      layer_backward(op, L, in, upper ? upper + dir * H : nullptr, D * H, dh, dc, lower, dir > 0, grads, keep);
      for (size_t j = 0; j < weights_per_layer(ld); ++j)
        if (dw[wi + j].dtype() != DType::float32)
          copy(op, grads[j], DType::float32, dw[wi + j].raw(), dw[wi + j].dtype(), dw[wi + j].numel());
      copy(op, dh, DType::float32, dh0[k].raw(), dh0[k].dtype(), B * H);
      if (ld.cell == MNN_RNN_LSTM) copy(op, dc, DType::float32, dc0[k].raw(), dc0[k].dtype(), B * H);
    }
    if (li == 0 && dx.dtype() != DType::float32) copy(op, lower, DType::float32, dx.raw(), dx.dtype(), dx.numel());
    upper = lower;
  }
}

}  // namespace metalnn::cuda

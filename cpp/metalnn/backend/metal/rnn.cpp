#include "metalnn/backend/metal/rnn.h"

#include <utility>

#include "metalnn/backend/metal/extents.h"
#include "metalnn/backend/metal/gemm.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {
namespace {

// Work in float32: data and weights of float16 storage are widened first.
Tensor f32(const Shape& s, Device dev) { return Tensor::empty(s, DType::float32, dev); }

MnnRnnReduceParams copy_params(const char* op, int64_t count, int64_t in_off, int64_t out_off) {
  MnnRnnReduceParams p{};
  p.count = checked_u32(op, "elements", count);
  p.in_off = checked_u32(op, "offset", in_off);
  p.out_off = checked_u32(op, "offset", out_off);
  return p;
}

// out[out_off ..] = in[in_off ..] for count elements, widening, narrowing or copying float32.
void copy(const char* op, const Tensor& in, int64_t in_off, const Tensor& out, int64_t out_off, int64_t count) {
  if (count == 0) return;
  const char* kernel = in.dtype() == DType::float16 ? "rnn_cast_widen_float16"
                       : out.dtype() == DType::float16 ? "rnn_cast_narrow_float16"
                                                       : "rnn_copy_float32";
  KernelCall k(op, kernel);
  k.buffer(0, in, Access::read).buffer(1, out, Access::write).bytes(2, copy_params(op, count, in_off, out_off));
  k.threads((size_t)count);
}

void zero(const char* op, const Tensor& out, int64_t out_off, int64_t count) {
  if (count == 0) return;
  KernelCall k(op, "rnn_zero_float32");
  k.buffer(0, out, Access::write).bytes(1, copy_params(op, count, 0, out_off)).threads((size_t)count);
}

// A float32 version of t (t itself when already float32).
Tensor widened(const char* op, const Tensor& t) {
  if (!t.defined() || t.dtype() == DType::float32) return t;
  Tensor out = f32(t.shape(), t.device());
  copy(op, t, 0, out, 0, t.numel());
  return out;
}

// Loads an optional (B, H) state into dst at element offset (zeros when undefined).
void load_state(const char* op, const Tensor& src, const Tensor& dst, int64_t off, int64_t n) {
  if (src.defined())
    copy(op, src, 0, dst, off, n);
  else
    zero(op, dst, off, n);
}

struct Gemm {
  const char* op;
  // C[c_off + m*ldc + n] = alpha * sum_k A(m, k) B(k, n) + beta * C, A/B strided (see rnn_params.h).
  void operator()(const Tensor& a, int64_t a_off, int64_t a_rs, int64_t a_cs, const Tensor& b, int64_t b_off,
                  int64_t b_rs, int64_t b_cs, const Tensor& c, int64_t c_off, int64_t ldc, int64_t M, int64_t N,
                  int64_t K, float beta) const {
    if (M == 0 || N == 0) return;
    MnnRnnGemmParams p{};
    p.M = checked_u32(op, "rows", M);
    p.N = checked_u32(op, "columns", N);
    p.K = checked_u32(op, "depth", K);
    p.a_off = checked_u32(op, "offset", a_off);
    p.a_rs = (uint32_t)a_rs;
    p.a_cs = (uint32_t)a_cs;
    p.b_off = checked_u32(op, "offset", b_off);
    p.b_rs = (uint32_t)b_rs;
    p.b_cs = (uint32_t)b_cs;
    p.c_off = checked_u32(op, "offset", c_off);
    p.ldc = (uint32_t)ldc;
    p.alpha = 1.f;
    p.beta = beta;
    KernelCall k(op, "rnn_gemm_float32");
    k.buffer(0, a, Access::read).buffer(1, b, Access::read);
    k.buffer(2, c, beta == 0.f ? Access::write : Access::read_write).bytes(3, p);
    gemm_groups(k, op, M, N, 1);
  }
};

// One layer and direction: its weights (float32), buffers and step parameters.
struct Layer {
  const RnnLayerDescriptor* ld;
  int64_t T, B, I, H, G;
  bool reverse;
  Tensor W, U, bias, peep;
  const RnnLayerBuffers* buf;
  Tensor lengths;  // int32, or undefined

  int64_t time_of(int64_t s) const { return reverse ? T - 1 - s : s; }
  bool gated() const { return ld->cell == MNN_RNN_GRU || ld->cell == MNN_RNN_MGU; }

  MnnRnnStepParams step(int64_t s, int64_t ldy, int64_t ycol, bool has_dy) const {
    MnnRnnStepParams p{};
    const int64_t t = time_of(s);
    p.cell = ld->cell;
    p.activation = ld->activation;
    p.batch = (uint32_t)B;
    p.hidden = (uint32_t)H;
    p.gates = (uint32_t)G;
    p.peephole = ld->peephole;
    p.flip_output_gates = ld->flip_output_gates;
    p.has_lengths = lengths.defined();
    p.time = (int32_t)t;
    p.y_stride = (uint32_t)ldy;
    p.off_gates = (uint32_t)(t * B * G * H);
    p.off_hp = (uint32_t)(t * B * H);
    p.off_hn = s + 1 < T ? (uint32_t)(time_of(s + 1) * B * H) : 0u;
    p.off_y = (uint32_t)(t * B * ldy + ycol);
    p.has_dy = has_dy;
    return p;
  }
  // The state after step s: the next step's slot of hp/cp, or the final state.
  const Tensor& h_after(int64_t s) const { return s + 1 < T ? buf->hp : buf->h_last; }
  const Tensor& c_after(int64_t s) const { return s + 1 < T ? buf->cp : buf->c_last; }
  const Tensor& any() const { return buf->hp; }  // bound where a kernel reads nothing
  const Tensor& lens() const { return lengths.defined() ? lengths : buf->hp; }
};

Layer make_layer(const char* op, const RnnDescriptor& d, const RnnState& st, size_t l, int dir,
                 const std::vector<Tensor>& w, size_t wi) {
  const RnnLayerDescriptor& ld = d.layers[l];
  Layer L{&ld, st.x_shape[0], st.x_shape[1], ld.input_size, ld.hidden_size, ld.gates(), dir == 1,
          widened(op, w[wi]), widened(op, w[wi + 1]), widened(op, w[wi + 2]),
          ld.peephole ? widened(op, w[wi + 3]) : Tensor(), &st.buffers[l * (size_t)d.directions() + (size_t)dir],
          st.lengths};
  return L;
}

size_t weights_per_layer(const RnnLayerDescriptor& ld) { return ld.peephole ? 4 : 3; }

void layer_forward(const char* op, const Layer& L, const Tensor& x, const Tensor& y, int64_t ldy, int64_t ycol) {
  const Gemm gemm{op};
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, GH = L.G * H, nsig = (L.G - 1) * H;
  const RnnLayerBuffers& b = *L.buf;
  gemm(x, 0, I, 1, L.W, 0, 1, I, b.gates, 0, GH, T * B, GH, I, 0.f);
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = L.time_of(s);
    const MnnRnnStepParams p = L.step(s, ldy, ycol, false);
    if (!L.gated()) {
      gemm(b.hp, t * B * H, H, 1, L.U, 0, 1, H, b.gates, t * B * GH, GH, B, GH, H, 1.f);
      if (L.ld->cell == MNN_RNN_LSTM) {
        KernelCall k(op, "rnn_lstm_forward_float32");
        k.buffer(0, b.gates, Access::read_write).buffer(1, L.bias, Access::read);
        k.buffer(2, L.peep.defined() ? L.peep : L.any(), Access::read).buffer(3, b.hp, Access::read);
        k.buffer(4, L.h_after(s), Access::write).buffer(5, b.cp, Access::read);
        k.buffer(6, L.c_after(s), Access::write).buffer(7, y, Access::write).buffer(8, L.lens(), Access::read);
        k.bytes(9, p).threads((size_t)(B * H));
      } else {
        KernelCall k(op, "rnn_single_forward_float32");
        k.buffer(0, b.gates, Access::read_write).buffer(1, L.bias, Access::read).buffer(2, b.hp, Access::read);
        k.buffer(3, L.h_after(s), Access::write).buffer(4, y, Access::write).buffer(5, L.lens(), Access::read);
        k.bytes(6, p).threads((size_t)(B * H));
      }
    } else {
      gemm(b.hp, t * B * H, H, 1, L.U, 0, 1, H, b.gates, t * B * GH, GH, B, nsig, H, 1.f);
      {
        KernelCall k(op, "rnn_gated_forward1_float32");
        k.buffer(0, b.gates, Access::read_write).buffer(1, L.bias, Access::read).buffer(2, b.hp, Access::read);
        k.buffer(3, b.rh, Access::write).buffer(4, L.lens(), Access::read).bytes(5, p).threads((size_t)(B * H));
      }
      gemm(b.rh, t * B * H, H, 1, L.U, nsig * H, 1, H, b.gates, t * B * GH + nsig, GH, B, H, H, 1.f);
      KernelCall k(op, "rnn_gated_forward2_float32");
      k.buffer(0, b.gates, Access::read_write).buffer(1, L.bias, Access::read).buffer(2, b.hp, Access::read);
      k.buffer(3, L.h_after(s), Access::write).buffer(4, y, Access::write).buffer(5, L.lens(), Access::read);
      k.bytes(6, p).threads((size_t)(B * H));
    }
  }
}

// dh / dc: in dL/d(final state), out dL/d(initial state) (swapped with scratch as the steps go).
void layer_backward(const char* op, const Layer& L, const Tensor& x, const Tensor& dy, int64_t ldy, int64_t ycol,
                    Tensor& dh, Tensor& dc, const Tensor& dx, bool dx_accumulate, const std::vector<Tensor>& grads) {
  const Gemm gemm{op};
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, GH = L.G * H, nsig = (L.G - 1) * H, R = T * B;
  const RnnLayerBuffers& b = *L.buf;
  const Device dev = x.device();
  Tensor dgates = f32({T, B, GH}, dev), dhp = f32({B, H}, dev), dcp = f32({B, H}, dev), drh = f32({B, H}, dev);
  const bool has_dy = dy.defined();
  const Tensor& dyb = has_dy ? dy : L.any();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = L.time_of(s);
    const MnnRnnStepParams p = L.step(s, ldy, ycol, has_dy);
    if (L.ld->cell == MNN_RNN_SINGLE_GATE) {
      KernelCall k(op, "rnn_single_backward_float32");
      k.buffer(0, b.gates, Access::read).buffer(1, dgates, Access::write).buffer(2, dh, Access::read);
      k.buffer(3, dyb, Access::read).buffer(4, dhp, Access::write).buffer(5, L.lens(), Access::read);
      k.bytes(6, p).threads((size_t)(B * H));
    } else if (L.ld->cell == MNN_RNN_LSTM) {
      KernelCall k(op, "rnn_lstm_backward_float32");
      k.buffer(0, b.gates, Access::read).buffer(1, dgates, Access::write).buffer(2, dh, Access::read);
      k.buffer(3, dc, Access::read).buffer(4, dyb, Access::read).buffer(5, dhp, Access::write);
      k.buffer(6, dcp, Access::write).buffer(7, b.cp, Access::read).buffer(8, L.c_after(s), Access::read);
      k.buffer(9, L.peep.defined() ? L.peep : L.any(), Access::read).buffer(10, L.lens(), Access::read);
      k.bytes(11, p).threads((size_t)(B * H));
    } else {
      {
        KernelCall k(op, "rnn_gated_backward1_float32");
        k.buffer(0, b.gates, Access::read).buffer(1, dgates, Access::write).buffer(2, dh, Access::read);
        k.buffer(3, dyb, Access::read).buffer(4, b.hp, Access::read).buffer(5, dhp, Access::write);
        k.buffer(6, L.lens(), Access::read).bytes(7, p).threads((size_t)(B * H));
      }
      gemm(dgates, t * B * GH + nsig, GH, 1, L.U, nsig * H, H, 1, drh, 0, H, B, H, H, 0.f);
      KernelCall k(op, "rnn_gated_backward2_float32");
      k.buffer(0, b.gates, Access::read).buffer(1, dgates, Access::read_write).buffer(2, drh, Access::read);
      k.buffer(3, b.hp, Access::read).buffer(4, dhp, Access::read_write).buffer(5, L.lens(), Access::read);
      k.bytes(6, p).threads((size_t)(B * H));
    }
    const int64_t K = L.gated() ? nsig : GH;  // the gates that saw h_prev itself
    gemm(dgates, t * B * GH, GH, 1, L.U, 0, H, 1, dhp, 0, H, B, H, K, 1.f);
    std::swap(dh, dhp);
    if (L.ld->cell == MNN_RNN_LSTM) std::swap(dc, dcp);
  }
  // Weight gradients as products over all T*B rows (dW, dU float32 in grads).
  gemm(dgates, 0, 1, GH, x, 0, I, 1, grads[0], 0, I, GH, I, R, 0.f);
  if (!L.gated()) {
    gemm(dgates, 0, 1, GH, b.hp, 0, H, 1, grads[1], 0, H, GH, H, R, 0.f);
  } else {
    gemm(dgates, 0, 1, GH, b.hp, 0, H, 1, grads[1], 0, H, nsig, H, R, 0.f);
    gemm(dgates, nsig, 1, GH, b.rh, 0, H, 1, grads[1], nsig * H, H, H, H, R, 0.f);
  }
  {
    MnnRnnReduceParams p{};
    p.rows = checked_u32(op, "rows", R);
    p.cols = (uint32_t)GH;
    KernelCall k(op, "rnn_column_sums_float32");
    k.buffer(0, dgates, Access::read).buffer(1, grads[2], Access::write).bytes(2, p).threads((size_t)GH);
  }
  if (L.ld->peephole) {
    MnnRnnReduceParams p{};
    p.time = (uint32_t)T;
    p.batch = (uint32_t)B;
    p.hidden = (uint32_t)H;
    p.reverse = L.reverse;
    KernelCall k(op, "rnn_peephole_backward_float32");
    k.buffer(0, dgates, Access::read).buffer(1, b.cp, Access::read).buffer(2, b.c_last, Access::read);
    k.buffer(3, grads[3], Access::write).bytes(4, p).threads((size_t)H);
  }
  gemm(dgates, 0, GH, 1, L.W, 0, I, 1, dx, 0, I, R, I, GH, dx_accumulate ? 1.f : 0.f);
}

}  // namespace

void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last) {
  const char* op = "rnn_forward";
  const int D = d.directions();
  const int64_t T = x.dim(0), B = x.dim(1);
  Tensor in = widened(op, x);
  const bool y_f32 = y.dtype() == DType::float32;
  size_t wi = 0;
  for (size_t l = 0; l < d.layers.size(); ++l) {
    const RnnLayerDescriptor& ld = d.layers[l];
    const int64_t H = ld.hidden_size;
    const bool top = l + 1 == d.layers.size();
    Tensor out = !top ? st.layer_outputs[l] : (y_f32 ? y : f32(y.shape(), y.device()));
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = l * (size_t)D + (size_t)dir;
      Layer L = make_layer(op, d, st, l, dir, w, wi);
      wi += weights_per_layer(ld);
      const int64_t first = L.time_of(0) * B * H;
      load_state(op, h0.empty() ? Tensor() : h0[k], L.buf->hp, first, B * H);
      if (ld.cell == MNN_RNN_LSTM) load_state(op, c0.empty() ? Tensor() : c0[k], L.buf->cp, first, B * H);
      layer_forward(op, L, in, out, D * H, dir * H);
      copy(op, L.buf->h_last, 0, h_last[k], 0, B * H);
      if (ld.cell == MNN_RNN_LSTM) copy(op, L.buf->c_last, 0, c_last[k], 0, B * H);
    }
    if (top && !y_f32) copy(op, out, 0, y, 0, T * B * D * H);
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
  const Device dev = x.device();
  Tensor xf = widened(op, x), upper = widened(op, dy);
  std::vector<size_t> first_weight;
  for (size_t l = 0, wi = 0; l < d.layers.size(); ++l) {
    first_weight.push_back(wi);
    wi += weights_per_layer(d.layers[l]) * (size_t)D;
  }
  for (size_t li = d.layers.size(); li-- > 0;) {
    const RnnLayerDescriptor& ld = d.layers[li];
    const int64_t H = ld.hidden_size, I = ld.input_size;
    const Tensor& in = li == 0 ? xf : st.layer_outputs[li - 1];
    Tensor lower = li == 0 && dx.dtype() == DType::float32 ? dx : f32({T, B, I}, dev);
    for (int dir = 0; dir < D; ++dir) {
      const size_t k = li * (size_t)D + (size_t)dir;
      const size_t wi = first_weight[li] + (size_t)dir * weights_per_layer(ld);
      Layer L = make_layer(op, d, st, li, dir, w, wi);
      Tensor dh = f32({B, H}, dev), dc = f32({B, H}, dev);
      load_state(op, dh_last.empty() ? Tensor() : dh_last[k], dh, 0, B * H);
      load_state(op, dc_last.empty() ? Tensor() : dc_last[k], dc, 0, B * H);
      std::vector<Tensor> grads;
      for (size_t j = 0; j < weights_per_layer(ld); ++j) {
        const Tensor& g = dw[wi + j];
        grads.push_back(g.dtype() == DType::float32 ? g : f32(g.shape(), dev));
      }
      layer_backward(op, L, in, upper, D * H, dir * H, dh, dc, lower, dir > 0, grads);
      for (size_t j = 0; j < grads.size(); ++j)
        if (dw[wi + j].dtype() != DType::float32) copy(op, grads[j], 0, dw[wi + j], 0, grads[j].numel());
      copy(op, dh, 0, dh0[k], 0, B * H);
      if (ld.cell == MNN_RNN_LSTM) copy(op, dc, 0, dc0[k], 0, B * H);
    }
    if (li == 0 && dx.dtype() != DType::float32) copy(op, lower, 0, dx, 0, lower.numel());
    upper = lower;
  }
}

}  // namespace metalnn::metal

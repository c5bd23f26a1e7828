#include "metalnn/graph/steps_rnn.h"

#include <cstring>

#include "metalnn/core/error.h"
#include "metalnn/ops/shape.h"

namespace metalnn::graph::steps {
namespace {

Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;
  s.label = label;
  s.run = std::move(run);
  return s;
}

const Tensor& param(const ParameterRef& p) {
  if (!p->value.defined()) fail(ErrorKind::Runtime, "graph", "parameter '", p->name, "' is not loaded");
  return p->value;
}

size_t byte_offset(const Tensor& t) {
  return (size_t)(static_cast<const char*>(t.raw()) - static_cast<const char*>(t.buffer()->data()));
}

// Rows of (B, H) tensors side by side: (B, D*H). Bidirectional final states on the host only.
Tensor concat_columns(const std::vector<Tensor>& parts, const char* op) {
  if (parts.size() == 1) return parts[0];
  const Tensor& p0 = parts[0];
  if (p0.device().type != DeviceType::cpu)
    fail(ErrorKind::Value, op, "bidirectional final states (output='final') run on the cpu only for now");
  const int64_t B = p0.dim(0), H = p0.dim(1), D = (int64_t)parts.size(), es = (int64_t)dtype_size(p0.dtype());
  Tensor y = Tensor::empty({B, D * H}, p0.dtype(), p0.device());
  for (int64_t d = 0; d < D; ++d)
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(static_cast<char*>(y.raw()) + (b * D * H + d * H) * es,
                  static_cast<const char*>(parts[(size_t)d].raw()) + b * H * es, (size_t)(H * es));
  return y;
}

std::vector<Tensor> split_columns(const Tensor& y, int64_t D, const char* op) {
  if (D == 1) return {y};
  if (y.device().type != DeviceType::cpu)
    fail(ErrorKind::Value, op, "bidirectional final states (output='final') run on the cpu only for now");
  const int64_t B = y.dim(0), H = y.dim(1) / D, es = (int64_t)dtype_size(y.dtype());
  std::vector<Tensor> out;
  for (int64_t d = 0; d < D; ++d) {
    Tensor p = Tensor::empty({B, H}, y.dtype(), y.device());
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(static_cast<char*>(p.raw()) + b * H * es,
                  static_cast<const char*>(y.raw()) + (b * D * H + d * H) * es, (size_t)(H * es));
    out.push_back(p);
  }
  return out;
}

// (N, C, [1,] L) image <-> (L, N, C) sequence: element (n, c, l) <-> (l, n, c), the transpose of
// the (N*C, L) matrix; it runs on the device that holds x.
Tensor image_to_sequence(const Tensor& x, const char* op) {
  if (x.ndim() != 3 && !(x.ndim() == 4 && x.dim(2) == 1))
    fail(ErrorKind::Value, op, "expected an image source (N, C, 1, L) or (N, C, L), got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1), L = x.dim(-1);
  return transpose_matrix_forward(x.reshape({N * C, L})).reshape({L, N, C});
}

Tensor sequence_to_image(const Tensor& s, const Shape& image_shape) {
  const int64_t L = s.dim(0), N = s.dim(1), C = s.dim(2);
  return transpose_matrix_backward(s.reshape({L, N * C})).reshape(image_shape);
}

}  // namespace

std::vector<Tensor> rnn_weight_views(const Tensor& flat, const RnnDescriptor& d, const char* op) {
  std::vector<Shape> shapes = d.weight_shapes();
  int64_t total = 0;
  for (const Shape& s : shapes) total += shape_numel(s);
  if (flat.numel() != total)
    fail(ErrorKind::Value, op, "the flat RNN weights hold ", flat.numel(), " values but the layers need ", total);
  std::vector<Tensor> views;
  size_t offset = byte_offset(flat);
  for (const Shape& s : shapes) {
    views.emplace_back(flat.buffer(), s, flat.dtype(), offset);
    offset += (size_t)shape_numel(s) * dtype_size(flat.dtype());
  }
  return views;
}

Step rnn_forward(const std::string& label, int x, int y, int state, ParameterRef w, const RnnDescriptor& d,
                 bool final_only, bool image_source) {
  return make(label, [=](Frame& f) {
    const char* op = "rnn_forward";
    std::vector<Tensor> ws = rnn_weight_views(param(w), d, op);
    const Tensor& in = slot(f, x, "input");
    Tensor seq = image_source ? image_to_sequence(in, op) : in;
    RnnForwardResult r = metalnn::rnn_forward(d, seq, ws, {}, {}, Tensor(), state >= 0);
    if (final_only) {
      const size_t top = (d.layers.size() - 1) * (size_t)d.directions();
      f.slots[(size_t)y] = concat_columns({r.h_last.begin() + (long)top, r.h_last.end()}, op);
    } else {
      f.slots[(size_t)y] = r.y;
    }
    if (state >= 0) f.states[(size_t)state] = r.state;
  });
}

Step rnn_backward(const std::string& label, int dy, int x, int state, int dx, int dw, ParameterRef w,
                  const RnnDescriptor& d, bool final_only, bool image_source) {
  return make(label, [=](Frame& f) {
    const char* op = "rnn_backward";
    const Tensor& wf = param(w);
    std::vector<Tensor> ws = rnn_weight_views(wf, d, op);
    const Tensor& g = slot(f, dy, "input");
    Tensor dseq;
    std::vector<Tensor> dh_last;
    if (final_only) {
      const size_t n = d.layers.size() * (size_t)d.directions(), top = n - (size_t)d.directions();
      dh_last.resize(n);
      std::vector<Tensor> parts = split_columns(g, d.directions(), op);
      for (size_t k = 0; k < parts.size(); ++k) dh_last[top + k] = parts[k];
    } else {
      dseq = g;
    }
    Tensor flat_grad;
    std::vector<Tensor> grad_views;
    if (dw >= 0) {
      flat_grad = Tensor::empty(wf.shape(), wf.dtype(), wf.device());
      grad_views = rnn_weight_views(flat_grad, d, op);
    }
    // Frozen weights still need somewhere to put their gradients: the op allocates them.
    const Tensor& in = slot(f, x, "input");
    Tensor seq = image_source ? image_to_sequence(in, op) : in;
    // The graph's RNN starts from zero states, so dL/d(initial state) has no reader: not computed.
    RnnBackwardResult r = metalnn::rnn_backward(d, seq, dseq, dh_last, {}, ws, f.states[(size_t)state],
                                                dw >= 0 ? &grad_views : nullptr, /*initial_state_gradients=*/false);
    if (dx >= 0) f.slots[(size_t)dx] = image_source ? sequence_to_image(r.dx, in.shape()) : r.dx;
    if (dw >= 0) f.slots[(size_t)dw] = flat_grad;
  });
}

}  // namespace metalnn::graph::steps

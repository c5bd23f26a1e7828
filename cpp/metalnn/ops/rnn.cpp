#include "metalnn/ops/rnn.h"

#include <climits>
#include <string>

#include "metalnn/backend/cpu/rnn.h"
#include "metalnn/backend/cuda/rnn.h"
#include "metalnn/backend/metal/rnn.h"
#include "metalnn/core/copy.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

const char* const kCells[MNN_RNN_CELL_COUNT] = {"single_gate", "lstm", "gru", "mgu"};
const char* const kActivations[MNN_RNN_ACTIVATION_COUNT] = {"tanh", "relu", "sigmoid"};

std::string indexed(const char* arg, size_t i) { return std::string(arg) + "[" + std::to_string(i) + "]"; }

// Checks an optional per-(layer, direction) list of (B, H_l) states.
void check_states(const char* op, const char* arg, const std::vector<Tensor>& v, const RnnDescriptor& d,
                  int64_t B, const Tensor& x, bool lstm_only) {
  if (v.empty()) return;
  const size_t n = d.layers.size() * (size_t)d.directions();
  if (v.size() != n)
    fail(ErrorKind::Value, op, arg, " must hold one (B, H) state per layer and direction (", n, "), got ", v.size());
  for (size_t k = 0; k < n; ++k) {
    const Tensor& t = v[k];
    if (!t.defined()) continue;
    const RnnLayerDescriptor& ld = d.layers[k / (size_t)d.directions()];
    std::string name = indexed(arg, k);
    if (lstm_only && ld.cell != MNN_RNN_LSTM)
      fail(ErrorKind::Value, op, name, " must be None: layer ", k / (size_t)d.directions(), " (", kCells[ld.cell],
           ") has no cell state");
    check::floating(op, name.c_str(), t);
    check::same_device(op, name.c_str(), t, "x", x);
    check::shape(op, name.c_str(), t, {B, ld.hidden_size});
  }
}

void check_weights(const char* op, const RnnDescriptor& d, const std::vector<Tensor>& w, const Tensor& x) {
  std::vector<Shape> shapes = d.weight_shapes();
  if (w.size() != shapes.size())
    fail(ErrorKind::Value, op, "weights must hold ", shapes.size(), " matrices (input, recurrent, bias",
         "[, peephole] per layer and direction), got ", w.size());
  for (size_t k = 0; k < w.size(); ++k) {
    std::string name = indexed("weights", k);
    if (!w[k].defined()) fail(ErrorKind::Type, op, name, " is required, got None");
    check::floating(op, name.c_str(), w[k]);
    check::same_device(op, name.c_str(), w[k], "x", x);
    check::shape(op, name.c_str(), w[k], shapes[k]);
  }
}

void check_x(const char* op, const RnnDescriptor& d, const Tensor& x) {
  d.validate(op);
  check::rank(op, "x", x, 3, "(T, B, I)");
  check::floating(op, "x", x);
  for (int i = 0; i < 3; ++i)
    if (x.dim(i) <= 0) fail(ErrorKind::Value, op, "x must have positive sizes, got shape ", shape_str(x.shape()));
  if (x.dim(2) != d.layers[0].input_size)
    fail(ErrorKind::Value, op, "x has ", x.dim(2), " features but layers[0].input_size is ", d.layers[0].input_size);
  if (x.dim(0) > INT32_MAX || x.dim(1) > INT32_MAX) fail(ErrorKind::Value, op, "x is too large");
}

// int32 (B,) lengths on x's device, checked on the host; undefined when not given.
Tensor checked_lengths(const char* op, const Tensor& lengths, const Tensor& x) {
  if (!lengths.defined()) return Tensor();
  check::dtype_in(op, "lengths", lengths, {DType::int32, DType::int64});
  check::same_device(op, "lengths", lengths, "x", x);
  check::shape(op, "lengths", lengths, {x.dim(1)});
  const int64_t T = x.dim(0), B = x.dim(1);
  Tensor host = to_host(lengths, op);
  Tensor out = Tensor::empty({B}, DType::int32);
  for (int64_t b = 0; b < B; ++b) {
    int64_t v = lengths.dtype() == DType::int32 ? host.data<int32_t>()[b] : host.data<int64_t>()[b];
    if (v < 0 || v > T)
      fail(ErrorKind::Value, op, "lengths[", b, "] must be in [0, T] = [0, ", T, "], got ", v);
    out.data<int32_t>()[b] = (int32_t)v;
  }
  return x.device().type == DeviceType::cpu ? out : to_device(out, x.device(), op);
}

Tensor f32(const Shape& s, Device dev) { return Tensor::empty(s, DType::float32, dev); }

}  // namespace

RnnLayerDescriptor RnnLayerDescriptor::make(const std::string& cell, int64_t input_size, int64_t hidden_size,
                                            const std::string& activation, bool peephole, bool flip_output_gates,
                                            const char* op) {
  RnnLayerDescriptor d;
  int c = -1, a = -1;
  for (int i = 0; i < MNN_RNN_CELL_COUNT; ++i)
    if (cell == kCells[i]) c = i;
  if (c < 0)
    fail(ErrorKind::Value, op, "cell: unknown cell '", cell, "' (expected single_gate, lstm, gru or mgu)");
  for (int i = 0; i < MNN_RNN_ACTIVATION_COUNT; ++i)
    if (activation == kActivations[i]) a = i;
  if (a < 0)
    fail(ErrorKind::Value, op, "activation: unknown activation '", activation, "' (expected tanh, relu or sigmoid)");
  check::positive(op, "input_size", input_size);
  check::positive(op, "hidden_size", hidden_size);
  if (input_size > INT32_MAX || hidden_size > INT32_MAX / 4) fail(ErrorKind::Value, op, "hidden_size is too large");
  if (peephole && c != MNN_RNN_LSTM) fail(ErrorKind::Value, op, "peephole is only for lstm cells, got ", cell);
  if (flip_output_gates && c != MNN_RNN_GRU && c != MNN_RNN_MGU)
    fail(ErrorKind::Value, op, "flip_output_gates is only for gru and mgu cells, got ", cell);
  if (a != MNN_RNN_TANH && c != MNN_RNN_SINGLE_GATE)
    fail(ErrorKind::Value, op, "activation is only for single_gate cells, got ", cell);
  d.cell = (MnnRnnCell)c;
  d.activation = (MnnRnnActivation)a;
  d.input_size = input_size;
  d.hidden_size = hidden_size;
  d.peephole = peephole;
  d.flip_output_gates = flip_output_gates;
  return d;
}

void RnnDescriptor::validate(const char* op) const {
  if (layers.empty()) fail(ErrorKind::Value, op, "layers must not be empty");
  for (size_t l = 1; l < layers.size(); ++l) {
    int64_t want = layers[l - 1].hidden_size * directions();
    if (layers[l].input_size != want)
      fail(ErrorKind::Value, op, "layers[", l, "].input_size must be ", want, " (the output of layer ", l - 1,
           "), got ", layers[l].input_size);
  }
}

std::vector<Shape> RnnDescriptor::weight_shapes() const {
  std::vector<Shape> s;
  for (const RnnLayerDescriptor& l : layers)
    for (int dir = 0; dir < directions(); ++dir) {
      const int64_t gh = l.gates() * l.hidden_size;
      s.push_back({gh, l.input_size});
      s.push_back({gh, l.hidden_size});
      s.push_back({gh});
      if (l.peephole) s.push_back({3, l.hidden_size});
    }
  return s;
}

RnnForwardResult rnn_forward(const RnnDescriptor& desc, const Tensor& x, const std::vector<Tensor>& weights,
                             const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, const Tensor& lengths,
                             bool training) {
  const char* op = "rnn_forward";
  check_x(op, desc, x);
  check_weights(op, desc, weights, x);
  const int64_t T = x.dim(0), B = x.dim(1);
  check_states(op, "h0", h0, desc, B, x, false);
  check_states(op, "c0", c0, desc, B, x, true);
  const Device dev = x.device();
  auto st = std::make_shared<RnnState>();
  st->desc = desc;
  st->x_shape = x.shape();
  st->x_dtype = x.dtype();
  st->lengths = checked_lengths(op, lengths, x);
  const int D = desc.directions();
  RnnForwardResult r;
  for (size_t l = 0; l < desc.layers.size(); ++l) {
    const RnnLayerDescriptor& ld = desc.layers[l];
    const int64_t H = ld.hidden_size;
    const bool lstm = ld.cell == MNN_RNN_LSTM, gated = ld.cell == MNN_RNN_GRU || ld.cell == MNN_RNN_MGU;
    for (int dir = 0; dir < D; ++dir) {
      RnnLayerBuffers b;
      b.gates = f32({T, B, ld.gates() * H}, dev);
      b.hp = f32({T, B, H}, dev);
      b.h_last = f32({B, H}, dev);
      if (lstm) {
        b.cp = f32({T, B, H}, dev);
        b.c_last = f32({B, H}, dev);
      }
      if (gated) b.rh = f32({T, B, H}, dev);
      st->buffers.push_back(b);
      r.h_last.push_back(Tensor::empty({B, H}, x.dtype(), dev));
      r.c_last.push_back(lstm ? Tensor::empty({B, H}, x.dtype(), dev) : Tensor());
    }
    if (l + 1 < desc.layers.size()) st->layer_outputs.push_back(f32({T, B, D * H}, dev));
  }
  r.y = Tensor::empty({T, B, desc.output_size()}, x.dtype(), dev);
  dispatch(op, dev, [&] { cpu::rnn_forward(desc, x, weights, h0, c0, *st, r.y, r.h_last, r.c_last); },
           [&] { metal::rnn_forward(desc, x, weights, h0, c0, *st, r.y, r.h_last, r.c_last); },
           cuda_kernel([&] { cuda::rnn_forward(desc, x, weights, h0, c0, *st, r.y, r.h_last, r.c_last); }));
  if (training) r.state = st;
  return r;
}

RnnBackwardResult rnn_backward(const RnnDescriptor& desc, const Tensor& x, const Tensor& dy,
                               const std::vector<Tensor>& dh_last, const std::vector<Tensor>& dc_last,
                               const std::vector<Tensor>& weights, const std::shared_ptr<State>& state,
                               const std::vector<Tensor>* dweights_out, bool initial_state_gradients) {
  const char* op = "rnn_backward";
  const RnnState& st = state_as<RnnState>(state, op, "rnn_forward(training=True)");
  check_x(op, desc, x);
  check_weights(op, desc, weights, x);
  if (st.x_shape != x.shape())
    fail(ErrorKind::Value, op, "x ", shape_str(x.shape()), " is not the forward input: the state was made for ",
         shape_str(st.x_shape));
  if (st.x_dtype != x.dtype()) fail(ErrorKind::Type, op, "x must have the forward input's dtype");
  if (st.desc.bidirectional != desc.bidirectional || st.desc.weight_shapes() != desc.weight_shapes())
    fail(ErrorKind::Value, op, "state was made by a layer with another descriptor");
  for (size_t l = 0; l < desc.layers.size(); ++l)
    if (st.desc.layers[l].cell != desc.layers[l].cell || st.desc.layers[l].activation != desc.layers[l].activation ||
        st.desc.layers[l].flip_output_gates != desc.layers[l].flip_output_gates)
      fail(ErrorKind::Value, op, "state was made by a layer with another descriptor");
  if (st.buffers.empty() || st.buffers[0].gates.device() != x.device())
    fail(ErrorKind::Value, op, "state is on another device than x");
  const int64_t T = x.dim(0), B = x.dim(1);
  if (dy.defined()) {
    check::same_dtype(op, "dy", dy, "x", x);
    check::same_device(op, "dy", dy, "x", x);
    check::shape(op, "dy", dy, {T, B, desc.output_size()});
  }
  check_states(op, "dh_last", dh_last, desc, B, x, false);
  check_states(op, "dc_last", dc_last, desc, B, x, true);
  if (dweights_out) {
    if (dweights_out->size() != weights.size())
      fail(ErrorKind::Value, op, "dweights_out must hold ", weights.size(), " tensors, got ", dweights_out->size());
    for (size_t k = 0; k < weights.size(); ++k) {
      std::string name = indexed("dweights_out", k);
      check::like(op, name.c_str(), (*dweights_out)[k], indexed("weights", k).c_str(), weights[k]);
    }
  }
  const Device dev = x.device();
  RnnBackwardResult r;
  r.dx = Tensor::empty(x.shape(), x.dtype(), dev);
  if (dweights_out)
    r.dweights = *dweights_out;
  else
    for (const Tensor& w : weights) r.dweights.push_back(Tensor::empty(w.shape(), w.dtype(), dev));
  // The CPU takes undefined entries as "not wanted"; the other backends always write them.
  const bool alloc0 = initial_state_gradients || dev.type != DeviceType::cpu;
  for (size_t k = 0; k < st.buffers.size(); ++k) {
    const RnnLayerDescriptor& ld = desc.layers[k / (size_t)desc.directions()];
    const bool lstm = ld.cell == MNN_RNN_LSTM;
    r.dh0.push_back(alloc0 ? Tensor::empty({B, ld.hidden_size}, x.dtype(), dev) : Tensor());
    r.dc0.push_back(alloc0 && lstm ? Tensor::empty({B, ld.hidden_size}, x.dtype(), dev) : Tensor());
  }
  dispatch(
      op, dev, [&] { cpu::rnn_backward(desc, x, dy, dh_last, dc_last, weights, st, r.dx, r.dweights, r.dh0, r.dc0); },
      [&] { metal::rnn_backward(desc, x, dy, dh_last, dc_last, weights, st, r.dx, r.dweights, r.dh0, r.dc0); },
      cuda_kernel(
          [&] { cuda::rnn_backward(desc, x, dy, dh_last, dc_last, weights, st, r.dx, r.dweights, r.dh0, r.dc0); }));
  if (!initial_state_gradients)
    for (size_t k = 0; k < r.dh0.size(); ++k) r.dh0[k] = r.dc0[k] = Tensor();
  return r;
}

}  // namespace metalnn

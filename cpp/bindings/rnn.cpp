// RNN layers (whole sequences) and their graph steps. Descriptors arrive as a list of
// per-layer tuples (cell, input_size, hidden_size, activation, peephole, flip_output_gates);
// weights and states as lists of arrays.
#include <pybind11/stl.h>

#include <string>

#include "convert.h"
#include "families.h"
#include "metalnn/core/error.h"
#include "metalnn/graph/steps_rnn.h"
#include "metalnn/ops/rnn.h"
#include "program_steps.h"

namespace metalnn::py_bind {
namespace {

RnnDescriptor parse_layers(const char* op, py::handle layers, bool bidirectional) {
  if (!py::isinstance<py::sequence>(layers) || py::isinstance<py::str>(layers))
    fail(ErrorKind::Type, op, "layers must be a list of layer descriptors");
  RnnDescriptor d;
  d.bidirectional = bidirectional;
  for (py::handle item : py::reinterpret_borrow<py::sequence>(layers)) {
    py::tuple t;
    try {
      t = item.cast<py::tuple>();
    } catch (...) {
      fail(ErrorKind::Type, op, "layers entries must be (cell, input_size, hidden_size, activation, peephole, "
                                "flip_output_gates) tuples");
    }
    if (t.size() != 6)
      fail(ErrorKind::Value, op, "layers entries must have 6 fields, got ", (int64_t)t.size());
    d.layers.push_back(RnnLayerDescriptor::make(t[0].cast<std::string>(), t[1].cast<int64_t>(),
                                                t[2].cast<int64_t>(), t[3].cast<std::string>(), t[4].cast<bool>(),
                                                t[5].cast<bool>(), op));
  }
  d.validate(op);
  return d;
}

// None -> empty list; otherwise each entry converted (None entries stay undefined).
std::vector<Tensor> tensor_list(Call& call, py::handle obj, const char* arg, bool allow_none_entries) {
  std::vector<Tensor> out;
  if (obj.is_none()) return out;
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::isinstance<py::array>(obj))
    fail(ErrorKind::Type, call.op(), arg, " must be a list of arrays");
  size_t k = 0;
  for (py::handle item : py::reinterpret_borrow<py::sequence>(obj)) {
    std::string name = std::string(arg) + "[" + std::to_string(k++) + "]";
    if (item.is_none() && allow_none_entries) {
      out.emplace_back();
      continue;
    }
    out.push_back(call.in(item, name.c_str()));  // the name only appears in messages thrown here
  }
  return out;
}

py::list out_list(const Call& call, const std::vector<Tensor>& v) {
  py::list l;
  for (const Tensor& t : v) l.append(t.defined() ? call.out(t) : py::none());
  return l;
}

}  // namespace

void bind_rnn(py::module_& ops) {
  py::class_<RnnState, State, std::shared_ptr<RnnState>>(
      ops, "RnnState", "What rnn_forward(training=True) keeps for rnn_backward (as MPSRNNMatrixTrainingState).")
      .def_property_readonly("shape", [](const RnnState& s) { return py::tuple(py::cast(s.x_shape)); })
      .def_property_readonly("num_layers", [](const RnnState& s) { return s.desc.layers.size(); })
      .def_property_readonly("bidirectional", [](const RnnState& s) { return s.desc.bidirectional; })
      .def("__repr__", [](const RnnState& s) {
        return "RnnState(shape=" + shape_str(s.x_shape) + ", layers=" + std::to_string(s.desc.layers.size()) +
               (s.desc.bidirectional ? ", bidirectional" : "") + ")";
      });

  ops.def("rnn_forward",
          [](py::handle x, py::handle weights, py::handle layers, bool bidirectional, py::handle h0, py::handle c0,
             py::handle lengths, bool training) {
            Call call("rnn_forward");
            RnnDescriptor d = parse_layers(call.op(), layers, bidirectional);
            Tensor tx = call.in(x, "x");
            std::vector<Tensor> w = tensor_list(call, weights, "weights", false);
            std::vector<Tensor> th0 = tensor_list(call, h0, "h0", true), tc0 = tensor_list(call, c0, "c0", true);
            Tensor tl = call.in_opt(lengths, "lengths");
            RnnForwardResult r = without_gil([&] { return rnn_forward(d, tx, w, th0, tc0, tl, training); });
            py::object state = r.state ? py::cast(r.state) : py::none();
            return py::make_tuple(call.out(r.y), out_list(call, r.h_last), out_list(call, r.c_last), state);
          },
          py::arg("x"), py::arg("weights"), py::arg("layers"), py::arg("bidirectional") = false,
          py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("lengths") = py::none(),
          py::arg("training") = false);

  ops.def("rnn_backward",
          [](py::handle x, py::handle dy, py::handle weights, py::handle layers, bool bidirectional, py::handle state,
             py::handle dh_last, py::handle dc_last, bool initial_state_gradients, py::handle dweights_out) {
            Call call("rnn_backward");
            RnnDescriptor d = parse_layers(call.op(), layers, bidirectional);
            Tensor tx = call.in(x, "x");
            Tensor tdy = call.in_opt(dy, "dy");
            std::vector<Tensor> w = tensor_list(call, weights, "weights", false);
            std::vector<Tensor> tdh = tensor_list(call, dh_last, "dh_last", true);
            std::vector<Tensor> tdc = tensor_list(call, dc_last, "dc_last", true);
            if (!py::isinstance<State>(state))
              fail(ErrorKind::Type, call.op(), "state must be the RnnState returned by rnn_forward(training=True), got ",
                   std::string(py::str(py::type::of(state).attr("__name__"))));
            auto st = state.cast<std::shared_ptr<State>>();
            // dweights_out: the caller's arrays receive the weight gradients (no copy afterwards).
            std::vector<Tensor> tdw;
            if (!dweights_out.is_none()) {
              if (!py::isinstance<py::sequence>(dweights_out) || py::isinstance<py::str>(dweights_out) ||
                  py::isinstance<py::array>(dweights_out))
                fail(ErrorKind::Type, call.op(), "dweights_out must be a list of arrays");
              size_t k = 0;
              for (py::handle item : py::reinterpret_borrow<py::sequence>(dweights_out)) {
                std::string name = "dweights_out[" + std::to_string(k++) + "]";
                tdw.push_back(call.in(item, name.c_str(), true));
              }
            }
            RnnBackwardResult r = without_gil([&] {
              return rnn_backward(d, tx, tdy, tdh, tdc, w, st, dweights_out.is_none() ? nullptr : &tdw,
                                  initial_state_gradients);
            });
            py::object dws = dweights_out.is_none()
                                 ? py::object(out_list(call, r.dweights))
                                 : py::object(py::list(py::reinterpret_borrow<py::object>(dweights_out)));
            return py::make_tuple(call.out(r.dx), dws, out_list(call, r.dh0), out_list(call, r.dc0));
          },
          py::arg("x"), py::arg("dy"), py::arg("weights"), py::arg("layers"), py::arg("bidirectional"),
          py::arg("state"), py::arg("dh_last") = py::none(), py::arg("dc_last") = py::none(),
          py::arg("initial_state_gradients") = true, py::arg("dweights_out") = py::none());

  // Graph steps (RNNNode): the weights are one flat parameter viewed as the layer's matrices.
  using graph::Program;
  def_program_step("add_rnn_forward", [](Program& p, const std::string& label, int x, int y, int state,
                                         graph::ParameterRef w, py::handle layers, bool bidirectional,
                                         bool final_only, bool image_source) {
    RnnDescriptor d = parse_layers("graph", layers, bidirectional);
    p.add(graph::steps::rnn_forward(label, x, y, state, std::move(w), d, final_only, image_source));
  });
  def_program_step("add_rnn_backward", [](Program& p, const std::string& label, int dy, int x, int state, int dx,
                                          int dw, graph::ParameterRef w, py::handle layers, bool bidirectional,
                                          bool final_only, bool image_source) {
    RnnDescriptor d = parse_layers("graph", layers, bidirectional);
    p.add(graph::steps::rnn_backward(label, dy, x, state, dx, dw, std::move(w), d, final_only, image_source));
  });
}

}  // namespace metalnn::py_bind

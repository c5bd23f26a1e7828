// The graph executor: parameters, programs (steps over slots) and the executor that
// runs them batch after batch. The Python graph builder (metalnn.graph) drives these.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <cstring>

#include "convert.h"
#include "families.h"
#include "metalnn/core/copy.h"
#include "metalnn/graph/executor.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/graph_capture.h"
#endif
#include "metalnn/graph/steps.h"
#include "metalnn/graph/steps_counted.h"
#include "optimizer_descriptors.h"
#include "program_steps.h"

namespace metalnn::py_bind {

py::object& program_class() {
  static auto* cls = new py::object();  // never destroyed: no decref after the interpreter is gone
  return *cls;
}

namespace {

using namespace metalnn::graph;
using Counter = std::shared_ptr<std::atomic<int64_t>>;
using Ints = std::vector<int64_t>;

std::shared_ptr<Executor> make_executor(std::shared_ptr<Program> program, int max_in_flight,
                                        std::optional<std::string> device) {
  Device d = device ? parse_device(*device, "graph") : Device{};
  return gil_free_destruction(new Executor(std::move(program), max_in_flight, d));
}

// A numpy array of a slot or parameter: a view on the host, a copy from a device.
py::array host_array(const Tensor& t) { return to_numpy(to_host(t, "graph")); }

Tensor copy_input(py::handle obj, const char* arg, Device device) {
  Call call("encode_batch");
  Tensor src = call.in(obj, arg);
  // CUDA: the executor copies the array into pinned memory before encode() returns.
  if (device.type == DeviceType::cuda) return src;
  // The batch owns its inputs (on the graph's device): the caller may refill its arrays
  // while the batch runs.
  return to_device(to_host(src, "encode_batch"), device, "encode_batch");
}

// A step that calls Python with the numpy views of some slots (data source update()).
Step python_step(const std::string& label, py::function fn, std::vector<int> slots) {
  auto callable = std::make_shared<GilCallable>(std::move(fn));
  return Step{label, [callable, slots, label](Frame& f) {
    py::gil_scoped_acquire gil;
    py::list args;
    for (int s : slots) args.append(host_array(slot(f, s, "python step")));
    try {
      callable->fn(args);
    } catch (py::error_already_set& e) {
      throw Error(ErrorKind::Runtime, "graph", std::string(e.what()));
    }
  }, {}, {}, {}};
}

// The neuron a layer runs in its epilogue ("none" when there is none).
NeuronDescriptor epilogue(const std::optional<std::string>& type, std::optional<float> a, std::optional<float> b) {
  return NeuronDescriptor::make(type.value_or("none"), a, b, {}, "graph");
}

std::vector<steps::UpdateTarget> targets_from(const py::list& items) {
  // items: [(value Parameter, gradient slot, [state Parameter or None, ...]), ...]
  std::vector<steps::UpdateTarget> out;
  for (auto item : items) {
    auto t = item.cast<py::tuple>();
    steps::UpdateTarget u;
    u.value = t[0].cast<ParameterRef>();
    u.gradient_slot = t[1].cast<int>();
    for (auto s : t[2].cast<py::list>()) u.state.push_back(s.is_none() ? ParameterRef() : s.cast<ParameterRef>());
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace

void bind_graph(py::module_& m) {
  auto g = m.def_submodule("graph", "graph executor internals (used by metalnn.graph)");

  py::class_<Parameter, ParameterRef>(g, "Parameter")
      .def(py::init([](const std::string& name) {
        auto p = std::make_shared<Parameter>();
        p->name = name;
        return p;
      }), py::arg("name"))
      .def_readonly("name", &Parameter::name)
      .def("bind", [](Parameter& p, py::handle array) {
            Call call("graph");
            p.value = call.in(array, p.name.c_str(), /*writable=*/true);
            ++parameter_epoch();  // captured CUDA graphs address the old tensor
          }, py::arg("array"), "Binds a writable array (zero-copy): the graph reads and updates it in place.")
      .def("unbind", [](Parameter& p) {
        p.value = Tensor();
        ++parameter_epoch();
      })
      .def_property_readonly("bound", [](const Parameter& p) { return p.value.defined(); })
      .def_property_readonly("value", [](const Parameter& p) -> py::object {
        if (!p.value.defined()) return py::none();
        // Host tensors give a writable view; device tensors the Tensor itself.
        return p.value.device().type == DeviceType::cpu ? py::object(to_numpy(p.value)) : py::cast(p.value);
      });

  py::class_<std::atomic<int64_t>, std::shared_ptr<std::atomic<int64_t>>>(g, "Counter")
      .def(py::init([](int64_t v) { return std::make_shared<std::atomic<int64_t>>(v); }), py::arg("value") = 0)
      .def_property("value", [](const std::atomic<int64_t>& c) { return c.load(); },
                    [](std::atomic<int64_t>& c, int64_t v) { c.store(v); });

  py::class_<Program, std::shared_ptr<Program>> prog(g, "Program");
  program_class() = prog;
  prog.def(py::init<int, int>(), py::arg("num_slots"), py::arg("num_states"))
      .def("__len__", &Program::size)
      .def("labels", [](const Program& p) {
        std::vector<std::string> out;
        for (size_t i = 0; i < p.size(); ++i) out.push_back(p.step(i).label);
        return out;
      })
      .def("set_release", &Program::set_release)
      .def("set_outputs", &Program::set_outputs)
      .def_property("check_numerics", &Program::check_numerics, &Program::set_check_numerics)
      .def("add_conv2d_forward", [](Program& p, const std::string& label, int x, int y, ParameterRef w,
                                    ParameterRef b, Ints stride, Ints padding, Ints dilation, int64_t groups,
                                    const std::string& acc, std::optional<std::string> neuron,
                                    std::optional<float> a, std::optional<float> nb, int pre) {
        p.add(steps::conv2d_forward(label, x, y, w, b, Conv2dDescriptor::make(stride, padding, dilation, groups, acc, "graph"),
                                    epilogue(neuron, a, nb), pre));
      })
      .def("add_conv2d_backward_input", [](Program& p, const std::string& label, int dy, int dx, ParameterRef w,
                                           Ints input_shape, Ints stride, Ints padding, Ints dilation,
                                           int64_t groups, const std::string& acc) {
        p.add(steps::conv2d_backward_input(label, dy, dx, w, input_shape,
                                           Conv2dDescriptor::make(stride, padding, dilation, groups, acc, "graph")));
      })
      .def("add_conv2d_backward_weight", [](Program& p, const std::string& label, int dy, int x, int dw,
                                            Ints weight_shape, Ints stride, Ints padding, Ints dilation,
                                            int64_t groups) {
        p.add(steps::conv2d_backward_weight(label, dy, x, dw, weight_shape,
                                            Conv2dDescriptor::make(stride, padding, dilation, groups, "float", "graph")));
      })
      .def("add_conv2d_backward_bias", [](Program& p, const std::string& label, int dy, int db) {
        p.add(steps::conv2d_backward_bias(label, dy, db));
      })
      .def("add_fully_connected_forward", [](Program& p, const std::string& label, int x, int y, ParameterRef w,
                                             ParameterRef b, const std::string& acc, std::optional<std::string> neuron,
                                             std::optional<float> a, std::optional<float> nb, int pre) {
        p.add(steps::fully_connected_forward(label, x, y, w, b, FullyConnectedDescriptor::make(acc, "graph"),
                                             epilogue(neuron, a, nb), pre));
      })
      .def("add_fully_connected_backward_input", [](Program& p, const std::string& label, int dy, int dx,
                                                    ParameterRef w, Ints input_shape, const std::string& acc) {
        p.add(steps::fully_connected_backward_input(label, dy, dx, w, input_shape,
                                                    FullyConnectedDescriptor::make(acc, "graph")));
      })
      .def("add_fully_connected_backward_weight", [](Program& p, const std::string& label, int dy, int x, int dw,
                                                     Ints weight_shape) {
        p.add(steps::fully_connected_backward_weight(label, dy, x, dw, weight_shape));
      })
      .def("add_fully_connected_backward_bias", [](Program& p, const std::string& label, int dy, int db) {
        p.add(steps::fully_connected_backward_bias(label, dy, db));
      })
      .def("add_neuron_forward", [](Program& p, const std::string& label, int x, int y, const std::string& type,
                                    std::optional<float> a, std::optional<float> b) {
        p.add(steps::neuron_forward(label, x, y, NeuronDescriptor::make(type, a, b, {}, "graph")));
      })
      .def("add_neuron_backward", [](Program& p, const std::string& label, int dy, int x, int dx,
                                     const std::string& type, std::optional<float> a, std::optional<float> b) {
        p.add(steps::neuron_backward(label, dy, x, dx, NeuronDescriptor::make(type, a, b, {}, "graph")));
      })
      .def("add_max_pool2d_forward", [](Program& p, const std::string& label, int x, int y, int state, Ints kernel,
                                        Ints stride, Ints padding) {
        p.add(steps::max_pool2d_forward(label, x, y, state, Pool2dDescriptor::make(kernel, stride, padding, true, "graph")));
      })
      .def("add_max_pool2d_backward", [](Program& p, const std::string& label, int dy, int state, int dx) {
        p.add(steps::max_pool2d_backward(label, dy, state, dx));
      })
      .def("add_avg_pool2d_forward", [](Program& p, const std::string& label, int x, int y, Ints kernel,
                                        Ints stride, Ints padding, bool count_include_pad) {
        p.add(steps::avg_pool2d_forward(label, x, y,
                                        Pool2dDescriptor::make(kernel, stride, padding, count_include_pad, "graph")));
      })
      .def("add_avg_pool2d_backward", [](Program& p, const std::string& label, int dy, int dx, Ints input_shape,
                                         Ints kernel, Ints stride, Ints padding, bool count_include_pad) {
        p.add(steps::avg_pool2d_backward(label, dy, dx, input_shape,
                                         Pool2dDescriptor::make(kernel, stride, padding, count_include_pad, "graph")));
      })
      .def("add_dropout_forward", [](Program& p, const std::string& label, int x, int y, int state, double keep,
                                     uint64_t seed, Counter counter) {
        DropoutDescriptor d;
        d.keep_probability = keep;
        d.validate("graph");
        p.add(steps::counted_dropout_forward(label, x, y, state, keep, seed, counter));
      })
      .def("add_dropout_backward", [](Program& p, const std::string& label, int dy, int state, int dx) {
        p.add(steps::dropout_backward(label, dy, state, dx));
      })
      .def("add_copy", [](Program& p, const std::string& label, int x, int y) { p.add(steps::copy_slot(label, x, y)); })
      .def("add_softmax_forward", [](Program& p, const std::string& label, int x, int y, bool log) {
        p.add(steps::softmax_forward(label, x, y, log));
      })
      .def("add_softmax_backward", [](Program& p, const std::string& label, int dy, int y, int dx, bool log) {
        p.add(steps::softmax_backward(label, dy, y, dx, log));
      })
      .def("add_softmax_cross_entropy_forward", [](Program& p, const std::string& label, int logits, int labels,
                                                   int weights, int loss, int state, const std::string& reduction,
                                                   double label_smoothing) {
        p.add(steps::softmax_cross_entropy_forward(
            label, logits, labels, weights, loss, state,
            SoftmaxCrossEntropyDescriptor::make(reduction, label_smoothing, "graph")));
      })
      .def("add_softmax_cross_entropy_backward", [](Program& p, const std::string& label, int state, int dlogits) {
        p.add(steps::softmax_cross_entropy_backward(label, state, dlogits));
      })
      .def("add_add", [](Program& p, const std::string& label, int a, int b, int y) { p.add(steps::add(label, a, b, y)); })
      .def("add_sgd_update", [](Program& p, const std::string& label, py::list targets, py::dict kw) {
        p.add(steps::sgd_update(label, targets_from(targets), sgd_descriptor("graph", kw)));
      })
      .def("add_adam_update", [](Program& p, const std::string& label, py::list targets, py::dict kw, Counter step) {
        p.add(steps::counted_adam_update(label, targets_from(targets), adam_descriptor("graph", kw), step));
      })
      .def("add_rmsprop_update", [](Program& p, const std::string& label, py::list targets, py::dict kw) {
        p.add(steps::rmsprop_update(label, targets_from(targets), rmsprop_descriptor("graph", kw)));
      })
      .def("add_python", [](Program& p, const std::string& label, py::function fn, std::vector<int> slots) {
        p.add(python_step(label, std::move(fn), std::move(slots)));
      }, "A step that calls fn(list of numpy views of `slots`) on the stream's thread.");

  py::class_<Batch, std::shared_ptr<Batch>>(g, "Batch")
      .def("wait", &Batch::wait, py::call_guard<py::gil_scoped_release>())
      .def("wait_for", [](const Batch& b, double seconds) { return b.event && b.event->wait_for(seconds); },
           py::call_guard<py::gil_scoped_release>(), py::arg("seconds"),
           "Waits at most `seconds`; True when the batch has finished (errors are raised by wait()).")
      .def("done", &Batch::done)
      .def_readonly("index", &Batch::index)
      .def("error", [](const Batch& b) -> py::object {
        if (!b.done() || !b.event->error()) return py::none();
        try {
          std::rethrow_exception(b.event->error());
        } catch (const std::exception& e) {
          return py::str(e.what());
        }
      })
      .def("slot", [](const Batch& b, int i) -> py::object {
        if (i < 0 || (size_t)i >= b.frame.slots.size() || !b.frame.slots[(size_t)i].defined()) return py::none();
        return host_array(b.frame.slots[(size_t)i]);
      });

  g.def("cuda_graph_stats", [] {
    py::dict d;
#ifdef METALNN_HAS_CUDA
    auto st = cuda::graph_stats();
    d["captures"] = st.captures;
    d["instantiations"] = st.instantiations;
    d["launches"] = st.launches;
    d["rerecords"] = st.rerecords;
#endif
    return d;
  }, "Process-wide CUDA graph counts: captures, instantiations, launches, rerecords (empty without CUDA).");

  py::class_<Executor, std::shared_ptr<Executor>>(g, "Executor")
      .def(py::init(&make_executor), py::arg("program"), py::arg("max_in_flight") = 2,
           py::arg("device") = py::none())
      .def("encode", [](Executor& e, py::list inputs, std::optional<py::function> on_complete, bool run_here) {
            std::vector<std::pair<int, Tensor>> ins;
            for (auto item : inputs) {
              auto t = item.cast<py::tuple>();
              std::string arg = t[2].cast<std::string>();
              ins.emplace_back(t[0].cast<int>(), copy_input(t[1], arg.c_str(), e.device()));
            }
            std::function<void(Batch&)> cb;
            if (on_complete) {
              auto fn = std::make_shared<GilCallable>(std::move(*on_complete));
              cb = [fn](Batch& b) {
                py::gil_scoped_acquire gil;
                try {
                  fn->fn(b.index);
                } catch (py::error_already_set& err) {
                  err.discard_as_unraisable("metalnn batch completion callback");
                }
              };
            }
            py::gil_scoped_release release;  // may block until a batch slot frees
            return e.encode(ins, std::move(cb), run_here);
          }, py::arg("inputs"), py::arg("on_complete") = py::none(), py::arg("run_here") = false,
          "inputs: [(slot, array, name)]; copies them and queues the program (run_here: the caller "
          "waits for it; a CPU graph with nothing queued runs it on this thread).")
      .def("synchronize", &Executor::synchronize, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("in_flight", &Executor::in_flight)
      .def_property_readonly("graph_launches", &Executor::graph_launches, "CUDA graph launches so far")
      .def_property_readonly("graph_captures", &Executor::graph_captures, "capture-once recordings so far")
      .def_property_readonly("graph_mode", &Executor::graph_mode,
                             "eager | probe | replay (captured once) | rerecord (recorded per batch) | off")
      .def_property_readonly("graph_fallback_reason", &Executor::graph_fallback_reason)
      .def_property_readonly("max_in_flight", &Executor::max_in_flight);
}

}  // namespace metalnn::py_bind

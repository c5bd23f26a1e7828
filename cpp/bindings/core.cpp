// Errors, dtypes, devices, tensors, streams, the allocator and the BLAS loader.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <cstring>

#include "convert.h"
#include "families.h"
#include "metalnn/backend/cpu/blas.h"
#include "metalnn/core/allocator.h"
#include "metalnn/core/copy.h"
#include "metalnn/core/state.h"
#include "metalnn/core/stream.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::py_bind {

namespace {

void register_errors() {
  // Typed C++ errors become the matching built-in Python exceptions.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.kind()) {
        case ErrorKind::Value: PyErr_SetString(PyExc_ValueError, e.what()); return;
        case ErrorKind::Type: PyErr_SetString(PyExc_TypeError, e.what()); return;
        case ErrorKind::Memory: PyErr_SetString(PyExc_MemoryError, e.what()); return;
        case ErrorKind::Runtime: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
      }
    }
  });
}

// numpy view of a host-visible tensor; a CUDA tensor is copied back first (GIL released).
py::array host_numpy(const Tensor& t) {
  Tensor h;
  {
    py::gil_scoped_release nogil;
    h = to_host(t, "numpy");
  }
  return to_numpy(h);
}

Tensor make_tensor(py::handle data, std::optional<std::string> dtype, std::optional<std::string> device) {
  const char* op = "tensor";
  Device dev = device ? parse_device(*device, op) : Device{};
  Call call(op);
  Tensor src = call.in(data, "data");
  DType dt = dtype ? parse_dtype(*dtype, op) : src.dtype();
  if (dt == src.dtype()) {
    // Own a copy: the tensor must not change when the caller's array does.
    Tensor t = Tensor::empty(src.shape(), dt, dev);
    copy_from_host(t, src.raw(), op);
    return t;
  }
  // Convert through numpy's casting rules.
  py::array a = to_numpy(src).attr("astype")(numpy_dtype(dt));
  Tensor converted = from_numpy(a, op, "data", false);
  Tensor t = Tensor::empty(converted.shape(), dt, dev);
  copy_from_host(t, converted.raw(), op);
  return t;
}

}  // namespace

void bind_core(py::module_& m) {
  register_errors();

  py::class_<Device>(m, "Device", "A compute device: cpu, metal or cuda.")
      .def(py::init([](const std::string& name) { return parse_device(name); }), py::arg("name"))
      .def_property_readonly("type", [](const Device& d) { return device_type_name(d.type); })
      .def_readonly("index", &Device::index)
      .def("__eq__", [](const Device& a, const Device& b) { return a == b; })
      .def("__hash__", [](const Device& d) { return (int)d.type * 1000 + d.index; })
      .def("__repr__", [](const Device& d) { return "Device('" + d.str() + "')"; })
      .def("__str__", &Device::str);
  m.def("default_device", &default_device, "The best available device, or METALNN_DEVICE when set.");
  m.def("available_devices", &available_devices, "Devices this build can run on.");

  py::class_<Tensor>(m, "Tensor", "A contiguous device tensor (NCHW images, row-major matrices).")
      .def(py::init(&make_tensor), py::arg("data"), py::arg("dtype") = py::none(), py::arg("device") = py::none(),
           "Copies `data` (array-like) to `device`, converting to `dtype` if given.")
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("device", &Tensor::device)
      .def_property_readonly("ndim", &Tensor::ndim)
      .def_property_readonly("size", &Tensor::numel)
      .def("numpy", &host_numpy,
           "A numpy array sharing this tensor's memory (CPU, Metal shared storage); a copy for CUDA tensors.")
      .def("__array__", [](const Tensor& t, py::object dtype, py::object copy) {
            py::array a = host_numpy(t);
            return dtype.is_none() ? a : py::array(a.attr("astype")(dtype));
          }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("__repr__", [](const Tensor& t) {
        return "Tensor(shape=" + shape_str(t.shape()) + ", dtype=" + dtype_name(t.dtype()) + ", device=" +
               t.device().str() + ")";
      });

  py::class_<State, std::shared_ptr<State>>(m, "State", "What a forward kernel hands to its gradient kernel.")
      .def_property_readonly("source_op", &State::source_op);

  py::class_<Event, std::shared_ptr<Event>>(m, "Event", "Completion of a submitted command list.")
      .def("done", &Event::done)
      .def("wait", &Event::wait, py::call_guard<py::gil_scoped_release>(),
           "Blocks until the commands have run; re-raises the first error one raised.");
  py::class_<Stream, std::shared_ptr<Stream>>(m, "Stream", "An in-order queue of command lists on a device.")
      .def(py::init([](std::optional<std::string> device) {
             return gil_free_destruction(make_stream(device ? parse_device(*device, "stream") : Device{}).release());
           }), py::arg("device") = py::none())
      .def_property_readonly("device", &Stream::device)
      .def("submit", [](Stream& s, std::vector<py::function> commands, std::optional<py::function> on_complete) {
            CommandList list;
            // Python callables run on the stream's thread and need the GIL there.
            for (auto& f : commands) {
              auto fn = std::make_shared<GilCallable>(std::move(f));
              list.add([fn] {
                py::gil_scoped_acquire gil;
                try {
                  fn->fn();
                } catch (py::error_already_set& e) {
                  throw Error(ErrorKind::Runtime, "stream", std::string("command raised ") + e.what());
                }
              });
            }
            if (on_complete) {
              auto cb = std::make_shared<GilCallable>(std::move(*on_complete));
              list.on_complete([cb](const Event&) {
                py::gil_scoped_acquire gil;
                try {
                  cb->fn();
                } catch (py::error_already_set& e) {
                  e.discard_as_unraisable("metalnn stream completion callback");
                }
              });
            }
            return s.submit(std::move(list));
          }, py::arg("commands"), py::arg("on_complete") = py::none(),
          "Queues callables to run in order on the stream's thread; returns an Event at once.")
      .def("synchronize", &Stream::synchronize, py::call_guard<py::gil_scoped_release>());

  m.def("allocator_stats", [] {
    auto s = cpu_allocator().stats();
    py::dict d;
    d["bytes_in_use"] = s.bytes_in_use;
    d["bytes_cached"] = s.bytes_cached;
    d["peak_bytes_in_use"] = s.peak_bytes_in_use;
    d["allocations"] = s.allocations;
    d["cache_hits"] = s.cache_hits;
    return d;
  }, "Statistics of the CPU caching allocator.");
  m.def("empty_cache", [] { cpu_allocator().release_cached(); }, "Returns cached blocks to the system.");
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("set_blas_library", &cpu::set_blas_library, py::arg("path"));
  m.def("blas_info", &cpu::blas_info);
}

}  // namespace metalnn::py_bind

// numpy / Tensor conversion for the bindings. A Call collects one op's tensor
// arguments: numpy in gives numpy out (zero-copy on CPU), mnn.Tensor in gives
// mnn.Tensor out. Conversion errors name the op and the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "metalnn/core/tensor.h"

namespace metalnn::py_bind {

namespace py = pybind11;

DType dtype_from_numpy(const py::dtype& dt, const char* op, const char* arg);
py::dtype numpy_dtype(DType t);
DType parse_dtype(const std::string& name, const char* op);
// An int or a sequence of ints (Python or numpy integers; bools and floats refused): a
// ValueError naming `arg` otherwise.
std::vector<int64_t> int_list(py::handle h, const char* op, const char* arg);

// A zero-copy Tensor over a C-contiguous numpy array (kept alive by the tensor).
Tensor from_numpy(const py::array& a, const char* op, const char* arg, bool writable);
// A numpy array sharing the tensor's memory (CPU tensors only).
py::array to_numpy(const Tensor& t);

// Runs a kernel with the GIL released (tensors keep their arrays alive meanwhile).
template <class F>
auto without_gil(F&& f) {
  py::gil_scoped_release release;
  return f();
}

// A Python callable that may be released on a non-Python thread: take the GIL to drop it.
struct GilCallable {
  py::function fn;
  explicit GilCallable(py::function f) : fn(std::move(f)) {}
  ~GilCallable() {
    py::gil_scoped_acquire gil;
    fn = py::function();
  }
};

// Owns an object whose destructor waits for a worker thread that may need the GIL
// (streams, executors): the GIL is released while it is destroyed.
template <class T>
std::shared_ptr<T> gil_free_destruction(T* object) {
  return std::shared_ptr<T>(object, [](T* p) {
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      delete p;
    } else {
      delete p;
    }
  });
}

class Call {
 public:
  explicit Call(const char* op) : op_(op) {}
  // Accepts mnn.Tensor, numpy arrays and array-likes (lists become float32).
  Tensor in(py::handle obj, const char* arg, bool writable = false);
  // Optional argument: undefined Tensor for None.
  Tensor in_opt(py::handle obj, const char* arg);
  py::object out(const Tensor& t) const;
  const char* op() const { return op_; }

 private:
  const char* op_;
  bool tensor_out_ = false;
};

}  // namespace metalnn::py_bind

#include "convert.h"

#include "metalnn/core/error.h"

namespace metalnn::py_bind {

namespace {
// Devices whose tensor memory the CPU can read in place (Metal buffers use shared storage).
bool host_visible(Device d) {
#ifdef METALNN_HAS_METAL
  if (d.type == DeviceType::metal) return true;
#endif
  return d.type == DeviceType::cpu;
}
}  // namespace

DType dtype_from_numpy(const py::dtype& dt, const char* op, const char* arg) {
  char kind = dt.kind();
  auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::float32;
  if (kind == 'f' && size == 2) return DType::float16;
  if (kind == 'i' && size == 4) return DType::int32;
  if (kind == 'i' && size == 8) return DType::int64;
  if (kind == 'u' && size == 1) return DType::uint8;
  fail(ErrorKind::Type, op, arg, ": unsupported dtype ", std::string(py::str(dt)),
       " (use float32 or float16 for data, int32/int64 for labels)");
}

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::float32: return py::dtype("float32");
    case DType::float16: return py::dtype("float16");
    case DType::int32: return py::dtype("int32");
    case DType::int64: return py::dtype("int64");
    case DType::uint8: return py::dtype("uint8");
  }
  return py::dtype("float32");
}

DType parse_dtype(const std::string& name, const char* op) {
  for (auto t : {DType::float32, DType::float16, DType::int32, DType::int64, DType::uint8})
    if (name == dtype_name(t)) return t;
  if (name == "float") return DType::float32;
  if (name == "half") return DType::float16;
  fail(ErrorKind::Value, op, "dtype: unknown dtype '", name, "'");
}

Tensor from_numpy(const py::array& a, const char* op, const char* arg, bool writable) {
  DType dt = dtype_from_numpy(a.dtype(), op, arg);
  if (!(a.flags() & py::array::c_style))
    fail(ErrorKind::Value, op, arg, " must be C-contiguous (use numpy.ascontiguousarray)");
  if (writable && !a.writeable()) fail(ErrorKind::Value, op, arg, " must be writeable (it is updated in place)");
  Shape shape(a.shape(), a.shape() + a.ndim());
  // The buffer holds a reference to the array; releasing it needs the GIL.
  auto* keep = new py::object(py::reinterpret_borrow<py::object>(a));
  auto release = [keep] {
    py::gil_scoped_acquire gil;
    delete keep;
  };
  size_t bytes = (size_t)a.nbytes();
  auto buffer = std::make_shared<Buffer>(const_cast<void*>(a.data()), bytes, Device{}, release);
  return Tensor(std::move(buffer), shape, dt);
}

py::array to_numpy(const Tensor& t) {
  // Metal tensors live in shared storage, so numpy views their bytes directly. Ops outside
  // a stream have finished when they return; inside one, synchronize the stream first.
  if (t.device().type != DeviceType::cpu && !host_visible(t.device()))
    fail(ErrorKind::Value, "numpy", "tensor is on ", t.device().str(), "; copy it to the cpu first");
  auto* holder = new std::shared_ptr<Buffer>(t.buffer());
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<Buffer>*>(p); });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  return py::array(numpy_dtype(t.dtype()), shape, t.raw(), owner);
}

Tensor Call::in(py::handle obj, const char* arg, bool writable) {
  if (obj.is_none()) fail(ErrorKind::Type, op_, arg, " is required, got None");
  if (py::isinstance<Tensor>(obj)) {
    tensor_out_ = true;
    return obj.cast<Tensor>();
  }
  if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj), op_, arg, writable);
  if (writable) fail(ErrorKind::Type, op_, arg, " must be a numpy array or mnn.Tensor (it is updated in place)");
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (...) {
  }
  if (!a) fail(ErrorKind::Type, op_, arg, ": expected a numpy array or mnn.Tensor, got ",
               std::string(py::str(py::type::of(obj).attr("__name__"))));
  // Python lists of floats arrive as float64 or object arrays: make them float32.
  if (a.dtype().kind() == 'O' || (a.dtype().kind() == 'f' && a.dtype().itemsize() == 8))
    a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  return from_numpy(a, op_, arg, false);
}

Tensor Call::in_opt(py::handle obj, const char* arg) { return obj.is_none() ? Tensor() : in(obj, arg); }

py::object Call::out(const Tensor& t) const {
  if (tensor_out_ || t.device().type != DeviceType::cpu) return py::cast(t);
  return to_numpy(t);
}

// An int or a sequence of ints (kernel_size, stride, padding, shapes); anything else is a
// ValueError naming the argument.
std::vector<int64_t> int_list(py::handle h, const char* op, const char* arg) {
  auto bad = [&] {
    fail(ErrorKind::Value, op, arg, " must be an int or a tuple of ints, got ", std::string(py::repr(h)));
  };
  // Python and numpy integers (through __index__); bools and floats are refused.
  auto to_int = [&](py::handle v) -> int64_t {
    if (py::isinstance<py::bool_>(v) || py::isinstance<py::float_>(v)) bad();
    PyObject* i = PyNumber_Index(v.ptr());
    if (!i) {
      PyErr_Clear();
      bad();
    }
    return py::reinterpret_steal<py::int_>(i).cast<int64_t>();
  };
  if (!py::isinstance<py::sequence>(h) || py::isinstance<py::str>(h)) return {to_int(h)};
  std::vector<int64_t> out;
  for (auto v : h.cast<py::sequence>()) out.push_back(to_int(v));
  return out;
}

}  // namespace metalnn::py_bind

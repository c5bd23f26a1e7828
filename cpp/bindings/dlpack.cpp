// DLPack exchange: mnn.Tensor.__dlpack__ / __dlpack_device__ and mnn.from_dlpack, so
// numpy, PyTorch, JAX and CuPy share memory with metalnn without copies.
#include <vector>

#include "convert.h"
#include "dlpack_abi.h"
#include "families.h"
#include "metalnn/core/error.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/device.h"
#endif

namespace metalnn::py_bind {
namespace {

namespace dl = dlpack;

dl::DataType to_dl(DType t) {
  switch (t) {
    case DType::float32: return {dl::kFloat, 32, 1};
    case DType::float16: return {dl::kFloat, 16, 1};
    case DType::int32: return {dl::kInt, 32, 1};
    case DType::int64: return {dl::kInt, 64, 1};
    case DType::uint8: return {dl::kUInt, 8, 1};
  }
  return {dl::kFloat, 32, 1};
}

DType from_dl(dl::DataType t) {
  if (t.lanes == 1) {
    if (t.code == dl::kFloat && t.bits == 32) return DType::float32;
    if (t.code == dl::kFloat && t.bits == 16) return DType::float16;
    if (t.code == dl::kInt && t.bits == 32) return DType::int32;
    if (t.code == dl::kInt && t.bits == 64) return DType::int64;
    if (t.code == dl::kUInt && t.bits == 8) return DType::uint8;
  }
  fail(ErrorKind::Type, "from_dlpack", "unsupported dtype (code ", (int)t.code, ", ", (int)t.bits, " bits, ",
       (int)t.lanes, " lanes); metalnn holds float32, float16, int32, int64 and uint8");
}

// Metal tensors live in shared storage: other libraries see them as host memory.
dl::Device to_dl(Device d) {
  if (d.type == DeviceType::cuda) return {dl::kCUDA, d.index};
  return {dl::kCPU, 0};
}

// What a capsule owns: a reference to the tensor's buffer and the shape array.
struct Export {
  Tensor tensor;
  std::vector<int64_t> shape;
  dl::ManagedTensor managed{};
};

void delete_export(dl::ManagedTensor* m) { delete static_cast<Export*>(m->manager_ctx); }

void capsule_destructor(PyObject* capsule) {
  // Only a capsule nobody consumed still owns its tensor (consumers rename it).
  if (!PyCapsule_IsValid(capsule, dl::kCapsuleName)) return;
  auto* m = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(capsule, dl::kCapsuleName));
  if (m && m->deleter) m->deleter(m);
}

py::capsule to_capsule(const Tensor& t) {
#ifdef METALNN_HAS_CUDA
  // Kernels queued on metalnn's streams finish before another library reads the memory.
  if (t.device().type == DeviceType::cuda) cuda::synchronize("__dlpack__");
#endif
  auto* e = new Export{t, t.shape(), {}};
  e->managed.dl_tensor = dl::DLTensor{t.raw(), to_dl(t.device()), (int32_t)t.ndim(), to_dl(t.dtype()),
                                      e->shape.data(), nullptr, 0};
  e->managed.manager_ctx = e;
  e->managed.deleter = delete_export;
  PyObject* cap = PyCapsule_New(&e->managed, dl::kCapsuleName, capsule_destructor);
  if (!cap) {
    delete e;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(cap);
}

Device device_of(const dl::Device& d) {
  if (d.device_type == dl::kCPU || d.device_type == dl::kCUDAHost) return Device{DeviceType::cpu, 0};
  if (d.device_type == dl::kCUDA) {
    Device dev{DeviceType::cuda, d.device_id};
    if (!device_available(DeviceType::cuda))
      fail(ErrorKind::Value, "from_dlpack", "the array is on CUDA device ", d.device_id,
           " but this metalnn build has no CUDA backend");
    return dev;
  }
  fail(ErrorKind::Value, "from_dlpack", "unsupported device type ", d.device_type,
       " (metalnn takes CPU and CUDA memory)");
}

Tensor from_capsule(py::capsule cap) {
  PyObject* obj = cap.ptr();
  if (!PyCapsule_IsValid(obj, dl::kCapsuleName))
    fail(ErrorKind::Type, "from_dlpack", "expected an unconsumed 'dltensor' capsule");
  auto* m = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(obj, dl::kCapsuleName));
  const dl::DLTensor& t = m->dl_tensor;
  DType dtype = from_dl(t.dtype);
  Device device = device_of(t.device);
  if (t.ndim < 0) fail(ErrorKind::Value, "from_dlpack", "negative ndim ", t.ndim);
  Shape shape(t.shape, t.shape + t.ndim);
  if (t.strides) {  // must be compact row-major (size-1 dimensions may have any stride)
    int64_t expected = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      if (shape[(size_t)i] != 1 && t.strides[i] != expected)
        fail(ErrorKind::Value, "from_dlpack", "the array must be C-contiguous (got strides that are not); "
             "make it contiguous first");
      expected *= shape[(size_t)i];
    }
  }
  size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  // From here the tensor owns the producer's memory: rename the capsule so it is not freed twice.
  if (PyCapsule_SetName(obj, dl::kUsedCapsuleName) != 0) throw py::error_already_set();
  auto buffer = std::make_shared<Buffer>(data, bytes, device, [m] {
    if (m->deleter) m->deleter(m);  // producers' deleters take the GIL themselves when they need it
  });
  return Tensor(buffer, shape, dtype);
}

}  // namespace

void bind_dlpack(py::module_& m) {
  py::object tensor = m.attr("Tensor");
  auto method = [&](const char* name, auto f, const char* doc, auto... extra) {
    py::setattr(tensor, name, py::cpp_function(f, py::name(name), py::is_method(tensor), extra..., doc));
  };
  method("__dlpack__", [](const Tensor& t, py::object stream, py::object max_version, py::object dl_device,
                          py::object copy) {
    if (!copy.is_none() && copy.cast<bool>())
      fail(ErrorKind::Value, "__dlpack__", "copy=True is not supported; copy the result instead");
    (void)stream, (void)max_version, (void)dl_device;
    return to_capsule(t);
  }, "DLPack export (zero-copy): the memory stays alive until the consumer releases it.",
         py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
         py::arg("dl_device") = py::none(), py::arg("copy") = py::none());
  method("__dlpack_device__", [](const Tensor& t) {
    auto d = to_dl(t.device());
    return py::make_tuple(d.device_type, d.device_id);
  }, "(device type, device id) as DLPack numbers.");
  m.def("from_dlpack", [](py::object x) -> Tensor {
    if (py::isinstance<py::capsule>(x)) return from_capsule(x.cast<py::capsule>());
    if (!py::hasattr(x, "__dlpack__"))
      fail(ErrorKind::Type, "from_dlpack", "expected an object with __dlpack__ (numpy, torch, jax, cupy "
           "arrays) or a DLPack capsule, got ", std::string(py::str(py::type::of(x).attr("__name__"))));
    py::object cap;
    try {
      cap = x.attr("__dlpack__")(py::arg("stream") = py::none());
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      cap = x.attr("__dlpack__")();  // producers that take no arguments
    }
    return from_capsule(cap.cast<py::capsule>());
  }, py::arg("x"), "A metalnn Tensor sharing `x`'s memory (zero-copy): CPU arrays become cpu tensors, "
     "CUDA arrays cuda tensors. `x` must be C-contiguous.");
}

}  // namespace metalnn::py_bind

// metalnn._core.distributed: NCCL communicators (CUDA builds) and the graph steps that
// all-reduce gradient buckets (Program.add_allreduce_start / add_allreduce_finish).
#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_distributed.h"
#include "program_steps.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/nccl.h"
#endif

namespace metalnn::py_bind {

void bind_distributed(py::module_& m) {
  using namespace metalnn::graph;
  auto d = m.def_submodule("distributed", "data-parallel internals (used by metalnn.distributed)");
  py::class_<GradientReducer, GradientReducerRef>(d, "GradientReducer")
      .def_property_readonly("buckets", &GradientReducer::buckets);
#ifdef METALNN_HAS_CUDA
  using cuda::NcclComm;
  d.attr("nccl_built") = true;
  d.def("nccl_load", &cuda::nccl_load, py::arg("path") = "",
        "Loads libnccl (path, else METALNN_NCCL_LIBRARY, else libnccl.so.2); False when it cannot.");
  d.def("nccl_info", &cuda::nccl_info);
  d.def("nccl_unique_id", [] { return py::bytes(cuda::nccl_unique_id()); });
  py::class_<NcclComm, std::shared_ptr<NcclComm>>(d, "NcclComm")
      .def(py::init([](py::bytes unique_id, int nranks, int rank, double timeout) {
             std::string id = unique_id;
             py::gil_scoped_release release;  // blocks until every rank has joined
             return std::make_shared<NcclComm>(id, nranks, rank, timeout);
           }), py::arg("unique_id"), py::arg("nranks"), py::arg("rank"), py::arg("timeout") = 300.0)
      .def_property_readonly("rank", &NcclComm::rank)
      .def_property_readonly("size", &NcclComm::size)
      .def("broadcast", [](NcclComm& c, const ParameterRef& p, int root) {
             if (!p || !p->value.defined()) fail(ErrorKind::Value, "distributed.broadcast", "parameter is not bound");
             Tensor t = p->value;
             py::gil_scoped_release release;
             c.broadcast(t, root);
           }, py::arg("parameter"), py::arg("root") = 0, "Overwrites a bound cuda parameter with root's, in place.")
      .def("allreduce_sum", [](NcclComm& c, py::array_t<double, py::array::c_style> a) {
             double* p = a.mutable_data();
             size_t n = (size_t)a.size();
             py::gil_scoped_release release;
             c.allreduce_sum(p, n);
           }, py::arg("values"), "Sums a float64 array over the ranks, in place.")
      .def("allgather", [](NcclComm& c, py::bytes b) {
             std::string s = b;
             std::vector<std::string> parts;
             {
               py::gil_scoped_release release;
               parts = c.allgather(s);
             }
             py::list out;
             for (const auto& p : parts) out.append(py::bytes(p));
             return out;
           }, py::arg("data"), "Every rank's bytes (all the same length), in rank order.")
      .def("abort", &NcclComm::abort);
  d.def("nccl_reducer", [](std::shared_ptr<NcclComm> comm, std::vector<size_t> bucket_elements, bool deterministic,
                           bool capture) {
          return make_nccl_reducer(std::static_pointer_cast<void>(comm), std::move(bucket_elements), deterministic,
                                   capture);
        }, py::arg("comm"), py::arg("bucket_elements"), py::arg("deterministic") = false, py::arg("capture") = true,
        "capture=False keeps the programs that use this reducer eager (out of CUDA graphs).");
#else
  d.attr("nccl_built") = false;
#endif
  def_program_step("add_allreduce_start", [](Program& p, const std::string& label, GradientReducerRef reducer,
                                             size_t bucket, std::vector<int> slots) {
    p.add(steps::allreduce_start(label, std::move(reducer), bucket, std::move(slots)));
  });
  def_program_step("add_allreduce_finish", [](Program& p, const std::string& label, GradientReducerRef reducer) {
    p.add(steps::allreduce_finish(label, std::move(reducer)));
  });
}

}  // namespace metalnn::py_bind

// Lets an op family's binding file add `graph.Program.add_<step>` methods next to its
// ops, so a new family needs no edit to graph.cpp (module.cpp binds the graph first).
#pragma once
#include <pybind11/pybind11.h>

#include <memory>

#include "metalnn/graph/program.h"

namespace metalnn::py_bind {

namespace py = pybind11;

// The bound graph.Program class; set by bind_graph.
py::object& program_class();

// Adds method `name` to graph.Program; `f` takes `graph::Program&` first.
template <class F, class... Extra>
void def_program_step(const char* name, F&& f, const Extra&... extra) {
  py::object cls = program_class();
  if (!cls) throw std::logic_error("def_program_step before bind_graph");
  py::cpp_function method(std::forward<F>(f), py::name(name), py::is_method(cls),
                          py::sibling(py::getattr(cls, name, py::none())), extra...);
  py::setattr(cls, name, method);
}

}  // namespace metalnn::py_bind

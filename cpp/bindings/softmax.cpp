#include "convert.h"
#include "families.h"

namespace metalnn::py_bind {

void bind_softmax(py::module_& ops) {}

}  // namespace metalnn::py_bind

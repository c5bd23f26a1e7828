#include "convert.h"
#include "families.h"

namespace metalnn::py_bind {

void bind_pooling(py::module_& ops) {}

}  // namespace metalnn::py_bind

#include "convert.h"
#include "families.h"

namespace metalnn::py_bind {

void bind_loss(py::module_& ops) {}

}  // namespace metalnn::py_bind

// shape kernels and their graph steps (filled in by the shape family).
#include "families.h"

namespace metalnn::py_bind {

void bind_shape(pybind11::module_& ops) { (void)ops; }

}  // namespace metalnn::py_bind

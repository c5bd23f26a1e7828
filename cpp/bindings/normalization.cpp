// normalization kernels and their graph steps (filled in by the normalization family).
#include "families.h"

namespace metalnn::py_bind {

void bind_normalization(pybind11::module_& ops) { (void)ops; }

}  // namespace metalnn::py_bind

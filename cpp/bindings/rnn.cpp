// rnn kernels and their graph steps (filled in by the rnn family).
#include "families.h"

namespace metalnn::py_bind {

void bind_rnn(pybind11::module_& ops) { (void)ops; }

}  // namespace metalnn::py_bind

#include "metalnn/ops/arithmetic.h"

#include "metalnn/backend/cpu/arithmetic.h"
#include "metalnn/backend/cuda/arithmetic.h"
#include "metalnn/backend/metal/arithmetic.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {

Tensor add_forward(const Tensor& a, const Tensor& b) {
  const char* op = "add_forward";
  check::floating(op, "a", a);
  check::like(op, "b", b, "a", a);
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch(op, a.device(), [&] { cpu::add_forward(a, b, y); }, [&] { metal::add_forward(a, b, y); },
           cuda_kernel([&] { cuda::add_forward(a, b, y); }));
  return y;
}

}  // namespace metalnn

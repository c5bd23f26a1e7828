#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/softmax.h"

namespace metalnn::cuda {
namespace {

// One thread per (n, s) position, looping over the c channels (stride s). Adjacent
// threads take adjacent s, so images read coalesced; (N, C) matrices are a first cut.
template <class S>
__global__ void softmax_forward_kernel(const S* x, S* y, MnnSoftmaxParams p) {
  int64_t positions = (int64_t)p.n * p.s;
  for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < positions;
       q += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = q / p.s, s = q % p.s;
    int64_t base = n * (int64_t)p.c * p.s + s;
    float m = -INFINITY;
    for (int c = 0; c < p.c; ++c) m = fmaxf(m, load(x, base + (int64_t)c * p.s));
    // fmaxf drops NaN: put it back so a NaN input gives NaN outputs, as on the CPU.
    bool nan = false;
    float sum = 0.f;
    for (int c = 0; c < p.c; ++c) {
      float v = load(x, base + (int64_t)c * p.s);
      nan |= v != v;
      sum += expf(v - m);
    }
    if (nan) m = NAN;
    float lse = logf(sum);
    for (int c = 0; c < p.c; ++c) {
      float v = load(x, base + (int64_t)c * p.s) - m;
      store(y, base + (int64_t)c * p.s, p.log ? v - lse : expf(v) / sum);
    }
  }
}

template <class S>
__global__ void softmax_backward_kernel(const S* dy, const S* y, S* dx, MnnSoftmaxParams p) {
  int64_t positions = (int64_t)p.n * p.s;
  for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < positions;
       q += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = q / p.s, s = q % p.s;
    int64_t base = n * (int64_t)p.c * p.s + s;
    float dot = 0.f;
    for (int c = 0; c < p.c; ++c) {
      int64_t i = base + (int64_t)c * p.s;
      dot += p.log ? load(dy, i) : load(dy, i) * load(y, i);
    }
    for (int c = 0; c < p.c; ++c) {
      int64_t i = base + (int64_t)c * p.s;
      float yv = load(y, i), g = load(dy, i);
      // softmax: dx = y (dy - sum dy y); log-softmax: dx = dy - exp(y) sum dy
      store(dx, i, p.log ? g - expf(yv) * dot : yv * (g - dot));
    }
  }
}

}  // namespace

void softmax_forward(const Tensor& x, const Tensor& y, const MnnSoftmaxParams& p) {
  int64_t positions = (int64_t)p.n * p.s;
  if (!positions) return;
  auto s = current_stream();
  if (x.dtype() == DType::float16)
    softmax_forward_kernel<<<grid_for(positions), kBlock, 0, s>>>(x.data<__half>(), y.data<__half>(), p);
  else
    softmax_forward_kernel<<<grid_for(positions), kBlock, 0, s>>>(x.data<float>(), y.data<float>(), p);
  check_launch(p.log ? "log_softmax_forward" : "softmax_forward");
}

void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx, const MnnSoftmaxParams& p) {
  int64_t positions = (int64_t)p.n * p.s;
  if (!positions) return;
  auto s = current_stream();
  if (y.dtype() == DType::float16)
    softmax_backward_kernel<<<grid_for(positions), kBlock, 0, s>>>(dy.data<__half>(), y.data<__half>(),
                                                                    dx.data<__half>(), p);
  else
    softmax_backward_kernel<<<grid_for(positions), kBlock, 0, s>>>(dy.data<float>(), y.data<float>(),
                                                                    dx.data<float>(), p);
  check_launch(p.log ? "log_softmax_backward" : "softmax_backward");
}

}  // namespace metalnn::cuda

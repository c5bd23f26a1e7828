// Broadcasting element-wise arithmetic on CUDA: the index math of cpp/kernels/arithmetic.metal.
#include "metalnn/backend/cuda/arithmetic.h"
#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

#define MNN_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float apply(uint32_t op, float a, float b) {
  switch (op) {
    case MNN_ARITH_ADD: return a + b;
    case MNN_ARITH_SUBTRACT: return a - b;
    case MNN_ARITH_MULTIPLY: return a * b;
    default: return a / b;
  }
}

__device__ __forceinline__ float term(uint32_t op, uint32_t operand, float g, float a, float b) {
  switch (op) {
    case MNN_ARITH_ADD: return g;
    case MNN_ARITH_SUBTRACT: return operand == 0 ? g : -g;
    case MNN_ARITH_MULTIPLY: return operand == 0 ? g * b : g * a;
    default: return operand == 0 ? g / b : -(g * a) / (b * b);
  }
}

// The gradient term of gradient element t, reduced position r (see arithmetic_params.h).
template <class S>
__device__ __forceinline__ float grad_term(const S* dy, const S* a, const S* b, const MnnArithmeticParams& p,
                                           int64_t t, int64_t r) {
  int64_t o = 0, ia = 0, ib = 0, os = 1;
  for (int k = 3; k >= 0; --k) {
    int64_t d;
    if (p.g_stride[k] != 0) {
      d = (t / p.g_stride[k]) % p.out[k];
    } else {
      d = r % p.out[k];
      r /= p.out[k];
    }
    o += d * os;
    os *= p.out[k];
    ia += d * p.a_stride[k];
    ib += d * p.b_stride[k];
  }
  float av = 0.f, bv = 0.f;
  if (p.op >= MNN_ARITH_MULTIPLY) {
    av = load(a, ia);
    bv = load(b, ib);
  }
  return term(p.op, p.operand, load(dy, o), av, bv);
}

template <class S>
__global__ void forward_kernel(const S* a, const S* b, S* y, MnnArithmeticParams p) {
  MNN_GRID_LOOP(i, (int64_t)p.count) {
    int64_t rest = i, ia = 0, ib = 0;
    for (int k = 3; k >= 0; --k) {
      const int64_t c = rest % p.out[k];
      rest /= p.out[k];
      ia += c * p.a_stride[k];
      ib += c * p.b_stride[k];
    }
    store(y, i, apply(p.op, load(a, ia), load(b, ib)));
  }
}

// One thread per gradient element: its terms in order.
template <class S>
__global__ void backward_kernel(const S* dy, const S* a, const S* b, S* g, MnnArithmeticParams p) {
  MNN_GRID_LOOP(t, (int64_t)p.g_count) {
    float acc = 0.f;
    for (int64_t r = 0; r < p.reduce_count; ++r) acc += grad_term(dy, a, b, p, t, r);
    store(g, t, acc);
  }
}

// One block per gradient element: strided partial sums, then warp shuffles and shared memory.
template <class S>
__global__ void backward_reduce_kernel(const S* dy, const S* a, const S* b, S* g, MnnArithmeticParams p) {
  __shared__ float warp_sums[32];
  for (int64_t t = blockIdx.x; t < p.g_count; t += gridDim.x) {
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < p.reduce_count; r += blockDim.x) acc += grad_term(dy, a, b, p, t, r);
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float total = 0.f;
      for (int w = 0; w < (int)(blockDim.x + 31) / 32; ++w) total += warp_sums[w];
      store(g, t, total);
    }
    __syncthreads();  // warp_sums is reused by the next element
  }
}

template <class S>
void forward_launch(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p) {
  forward_kernel<S><<<grid_for(p.count), kBlock, 0, current_stream()>>>(a.data<S>(), b.data<S>(), y.data<S>(), p);
}

template <class S>
void backward_launch(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                     const MnnArithmeticParams& p) {
  auto s = current_stream();
  if (p.reduce_count >= 64) {
    const unsigned blocks = p.g_count < 65535u ? p.g_count : 65535u;
    backward_reduce_kernel<S><<<blocks, kBlock, 0, s>>>(dy.data<S>(), a.data<S>(), b.data<S>(), g.data<S>(), p);
  } else {
    backward_kernel<S><<<grid_for(p.g_count), kBlock, 0, s>>>(dy.data<S>(), a.data<S>(), b.data<S>(), g.data<S>(), p);
  }
}

}  // namespace

void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p) {
  if (!p.count) return;
  if (y.dtype() == DType::float16) forward_launch<__half>(a, b, y, p);
  else forward_launch<float>(a, b, y, p);
  check_launch("arithmetic_forward");
}

void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p) {
  if (!p.g_count) return;
  if (g.dtype() == DType::float16) backward_launch<__half>(dy, a, b, g, p);
  else backward_launch<float>(dy, a, b, g, p);
  check_launch("arithmetic_backward");
}

}  // namespace metalnn::cuda

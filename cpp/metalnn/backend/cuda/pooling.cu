#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/pooling.h"

namespace metalnn::cuda {
namespace {

#define MNN_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Two adjacent values as one 8-byte (float) or 4-byte (half) access, for 2-wide windows.
template <class S>
struct Pair;
template <>
struct Pair<float> {
  using T = float2;
  static __device__ __forceinline__ float2 make(float a, float b) { return make_float2(a, b); }
  static __device__ __forceinline__ float2 get(const float* p) { return *reinterpret_cast<const float2*>(p); }
};
template <>
struct Pair<__half> {
  using T = __half2;
  static __device__ __forceinline__ __half2 make(float a, float b) { return __floats2half2_rn(a, b); }
  static __device__ __forceinline__ float2 get(const __half* p) {
    return __half22float2(*reinterpret_cast<const __half2*>(p));
  }
};

// One thread per output; the row-major first maximum wins, a NaN wins (as on the CPU).
// I: index type (uint32_t when the sizes fit, see with_index_type).
template <class S, class I>
__global__ void max_forward_kernel(const S* x, S* y, int32_t* arg, MnnPool2dParams p) {
  const I total = (I)p.n * p.c * p.out_h * p.out_w;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    int ow = (int)(i % (I)p.out_w), oh = (int)((i / (I)p.out_w) % (I)p.out_h);
    I plane = i / ((I)p.out_w * p.out_h);
    const S* xp = x + (int64_t)plane * p.h * p.w;
    int h0 = oh * p.stride_h - p.pad_top, w0 = ow * p.stride_w - p.pad_left;
    int hs = max(h0, 0), he = min(h0 + p.kernel_h, p.h), ws = max(w0, 0), we = min(w0 + p.kernel_w, p.w);
    float m = load(xp, (int64_t)hs * p.w + ws);
    int32_t best = hs * p.w + ws;
    for (int h = hs; h < he; ++h)
      for (int w = ws; w < we; ++w) {
        float v = load(xp, (int64_t)h * p.w + w);
        if ((m == m) & !(v <= m)) {
          m = v;
          best = h * p.w + w;
        }
      }
    store(y, i, m);
    arg[i] = best;
  }
}

// 2-wide windows at even columns (stride 2, no left padding, even rows, x pair-aligned): each
// window row is one paired load; same comparisons in the same order as max_forward_kernel.
template <class S, class I>
__global__ void max_forward_pairs_kernel(const S* x, S* y, int32_t* arg, MnnPool2dParams p) {
  const I total = (I)p.n * p.c * p.out_h * p.out_w;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I orow = i / (I)p.out_w;
    const int ow = (int)(i - orow * (I)p.out_w), oh = (int)(orow % (I)p.out_h);
    const S* xp = x + (int64_t)(orow / (I)p.out_h) * p.h * p.w;
    const int h0 = oh * p.stride_h - p.pad_top, w0 = 2 * ow;
    const int hs = max(h0, 0), he = min(h0 + p.kernel_h, p.h);
    float m = 0.f;
    int32_t best = -1;
    for (int h = hs; h < he; ++h) {
      const int at = h * p.w + w0;
      const float2 v = Pair<S>::get(xp + at);
      if (best < 0 || ((m == m) & !(v.x <= m))) {
        m = v.x;
        best = at;
      }
      if ((m == m) & !(v.y <= m)) {
        m = v.y;
        best = at + 1;
      }
    }
    store(y, i, m);
    arg[i] = best;
  }
}

// Output rows (or columns) whose windows cover input row h: [lo, hi).
__device__ __forceinline__ void covering(int h, int pad, int k, int stride, int out, int& lo, int& hi) {
  int a = h + pad - k + 1;  // oh*stride >= a
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = min((h + pad) / stride + 1, out);
}

// One thread per input element: gathers the outputs whose winner it is, in output order
// (the CPU's accumulation order), so overlapping windows need no atomics.
template <class S>
__global__ void max_backward_kernel(const S* dy, const int32_t* arg, S* dx, MnnPool2dParams p, int kh, int kw,
                                    int sh, int sw, int pt, int pl) {
  const int64_t total = (int64_t)p.n * p.c * p.h * p.w;
  MNN_GRID_LOOP(i, total) {
    int w = (int)(i % p.w), h = (int)((i / p.w) % p.h);
    int64_t plane = i / ((int64_t)p.w * p.h);
    int64_t ob = plane * p.out_h * p.out_w;
    int32_t me = h * p.w + w;
    float acc = 0.f;
    int oh0, oh1, ow0, ow1;
    covering(h, pt, kh, sh, p.out_h, oh0, oh1);
    covering(w, pl, kw, sw, p.out_w, ow0, ow1);
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow) {
        int64_t o = ob + (int64_t)oh * p.out_w + ow;
        if (arg[o] == me) acc += load(dy, o);
      }
    store(dx, i, acc);
  }
}

// Windows that do not overlap (stride >= kernel on both axes, padding >= 0): each input lies
// in at most one window, so its gradient is that window's dy when it won, else 0. Threads
// write 16-byte packs of dx (the flat index crosses rows freely); reads of dy and argmax are
// shared by the window's inputs through the cache.
template <class S, class I>
__device__ __forceinline__ float disjoint_grad(const S* dy, const int32_t* arg, const MnnPool2dParams& p, I plane,
                                               int h, int w) {
  const int th = h + p.pad_top, tw = w + p.pad_left, oh = th / p.stride_h, ow = tw / p.stride_w;
  if (oh >= p.out_h || ow >= p.out_w || th - oh * p.stride_h >= p.kernel_h || tw - ow * p.stride_w >= p.kernel_w)
    return 0.f;
  const I o = (plane * p.out_h + oh) * p.out_w + ow;
  return arg[o] == h * p.w + w ? load(dy, o) : 0.f;
}

template <class S, class I>
__global__ void max_backward_disjoint_kernel(const S* dy, const int32_t* arg, S* dx, MnnPool2dParams p, bool vec) {
  constexpr int V = Pack<S>::n;
  const I total = (I)p.n * p.c * p.h * p.w, packs = vec ? total / V : 0;
  const I first = blockIdx.x * (I)blockDim.x + threadIdx.x, stride = (I)gridDim.x * blockDim.x;
  for (I i = first; i < packs; i += stride) {
    const I e = i * V, row = e / (I)p.w;
    int w = (int)(e - row * (I)p.w), h = (int)(row % (I)p.h);
    I plane = row / (I)p.h;
    float f[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      f[k] = disjoint_grad(dy, arg, p, plane, h, w);
      if (++w == p.w) {
        w = 0;
        if (++h == p.h) h = 0, ++plane;
      }
    }
    store_pack(dx, i, f);
  }
  for (I e = packs * V + first; e < total; e += stride) {
    const I row = e / (I)p.w;
    store(dx, e, disjoint_grad(dy, arg, p, row / (I)p.h, (int)(row % (I)p.h), (int)(e - row * (I)p.w)));
  }
}

// Windows that tile the input exactly (stride == kernel, no padding, out * kernel == size):
// one thread per output writes its whole window (the winner gets dy, the rest 0), so each
// input is written once with no per-input index search. Pairs: 2-wide windows stored as one
// float2 / half2 (8- or 4-byte aligned rows).
template <class S, class I, bool kPairs>
__global__ void max_backward_tiled_kernel(const S* dy, const int32_t* arg, S* dx, MnnPool2dParams p) {
  const I total = (I)p.n * p.c * p.out_h * p.out_w;
  const int kh = p.kernel_h, kw = p.kernel_w;
  for (I o = blockIdx.x * (I)blockDim.x + threadIdx.x; o < total; o += (I)gridDim.x * blockDim.x) {
    const I orow = o / (I)p.out_w;
    const int ow = (int)(o - orow * (I)p.out_w), oh = (int)(orow % (I)p.out_h);
    const I plane = orow / (I)p.out_h;
    const float g = load(dy, o);
    const int32_t win = arg[o];
    const int h0 = oh * kh, w0 = ow * kw;
    S* base = dx + (int64_t)plane * p.h * p.w;
    for (int i = 0; i < kh; ++i) {
      const int at = (h0 + i) * p.w + w0;
      if constexpr (kPairs) {
        reinterpret_cast<typename Pair<S>::T*>(base + at)[0] = Pair<S>::make(at == win ? g : 0.f,
                                                                               at + 1 == win ? g : 0.f);
      } else {
        for (int j = 0; j < kw; ++j) store(base, at + j, at + j == win ? g : 0.f);
      }
    }
  }
}

__device__ __forceinline__ float divisor(const MnnPool2dParams& p, int oh, int ow) {
  if (p.count_include_pad) return (float)(p.kernel_h * p.kernel_w);
  int h0 = oh * p.stride_h - p.pad_top, w0 = ow * p.stride_w - p.pad_left;
  int rows = min(h0 + p.kernel_h, p.h) - max(h0, 0), cols = min(w0 + p.kernel_w, p.w) - max(w0, 0);
  return (float)(rows * cols);
}

template <class S>
__global__ void avg_forward_kernel(const S* x, S* y, MnnPool2dParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
  MNN_GRID_LOOP(i, total) {
    int ow = (int)(i % p.out_w), oh = (int)((i / p.out_w) % p.out_h);
    int64_t plane = i / ((int64_t)p.out_w * p.out_h);
    const S* xp = x + plane * p.h * p.w;
    int h0 = oh * p.stride_h - p.pad_top, w0 = ow * p.stride_w - p.pad_left;
    int hs = max(h0, 0), he = min(h0 + p.kernel_h, p.h), ws = max(w0, 0), we = min(w0 + p.kernel_w, p.w);
    float acc = 0.f;
    for (int h = hs; h < he; ++h)
      for (int w = ws; w < we; ++w) acc += load(xp, (int64_t)h * p.w + w);
    store(y, i, acc / divisor(p, oh, ow));
  }
}

template <class S>
__global__ void avg_backward_kernel(const S* dy, S* dx, MnnPool2dParams p) {
  const int64_t total = (int64_t)p.n * p.c * p.h * p.w;
  MNN_GRID_LOOP(i, total) {
    int w = (int)(i % p.w), h = (int)((i / p.w) % p.h);
    int64_t plane = i / ((int64_t)p.w * p.h);
    int64_t ob = plane * p.out_h * p.out_w;
    int oh0, oh1, ow0, ow1;
    covering(h, p.pad_top, p.kernel_h, p.stride_h, p.out_h, oh0, oh1);
    covering(w, p.pad_left, p.kernel_w, p.stride_w, p.out_w, ow0, ow1);
    float acc = 0.f;
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow) acc += load(dy, ob + (int64_t)oh * p.out_w + ow) / divisor(p, oh, ow);
    store(dx, i, acc);
  }
}

// Taps [lo, hi) of a dilated window along one axis inside [0, size); start: the window start.
struct Taps {
  int lo, hi, start;
};

__device__ __forceinline__ Taps dilated_taps(int o, int stride, int pad, int k, int d, int size) {
  const int start = o * stride - pad;
  const int lo = start >= 0 ? 0 : (-start + d - 1) / d;
  const int hi = size - 1 - start < 0 ? 0 : min(k, (size - 1 - start) / d + 1);
  return {lo, max(hi, lo), start};
}

// Output along one axis whose window has input i as tap k, or -1.
__device__ __forceinline__ int window_of_tap(int i, int k, int stride, int pad, int d, int out) {
  const int t = i + pad - k * d;
  if (t < 0 || t % stride != 0) return -1;
  const int o = t / stride;
  return o < out ? o : -1;
}

template <class S>
__global__ void dilated_max_forward_kernel(const S* x, S* y, int32_t* arg, MnnPool2dDilatedParams dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
  MNN_GRID_LOOP(i, total) {
    int ow = (int)(i % p.out_w), oh = (int)((i / p.out_w) % p.out_h);
    int64_t plane = i / ((int64_t)p.out_w * p.out_h);
    const S* xp = x + plane * p.h * p.w;
    Taps r = dilated_taps(oh, p.stride_h, p.pad_top, p.kernel_h, dp.dilation_h, p.h);
    Taps c = dilated_taps(ow, p.stride_w, p.pad_left, p.kernel_w, dp.dilation_w, p.w);
    float m = 0.f;
    int32_t best = -1;
    for (int kh = r.lo; kh < r.hi; ++kh) {
      const int h = r.start + kh * dp.dilation_h;
      for (int kw = c.lo; kw < c.hi; ++kw) {
        const int w = c.start + kw * dp.dilation_w;
        float v = load(xp, (int64_t)h * p.w + w);
        if (best < 0 || ((m == m) & !(v <= m))) {
          m = v;
          best = h * p.w + w;
        }
      }
    }
    store(y, i, m);
    arg[i] = best;
  }
}

// One thread per input; taps from last to first visit the windows in output order.
template <class S>
__global__ void dilated_max_backward_kernel(const S* dy, const int32_t* arg, S* dx, MnnPool2dDilatedParams dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t total = (int64_t)p.n * p.c * p.h * p.w;
  MNN_GRID_LOOP(i, total) {
    int w = (int)(i % p.w), h = (int)((i / p.w) % p.h);
    int64_t ob = (i / ((int64_t)p.w * p.h)) * p.out_h * p.out_w;
    int32_t me = h * p.w + w;
    float acc = 0.f;
    for (int kh = p.kernel_h - 1; kh >= 0; --kh) {
      int oh = window_of_tap(h, kh, p.stride_h, p.pad_top, dp.dilation_h, p.out_h);
      if (oh < 0) continue;
      for (int kw = p.kernel_w - 1; kw >= 0; --kw) {
        int ow = window_of_tap(w, kw, p.stride_w, p.pad_left, dp.dilation_w, p.out_w);
        if (ow < 0) continue;
        int64_t o = ob + (int64_t)oh * p.out_w + ow;
        if (arg[o] == me) acc += load(dy, o);
      }
    }
    store(dx, i, acc);
  }
}

template <class S>
__global__ void l2_forward_kernel(const S* x, S* y, MnnPool2dDilatedParams dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
  MNN_GRID_LOOP(i, total) {
    int ow = (int)(i % p.out_w), oh = (int)((i / p.out_w) % p.out_h);
    const S* xp = x + (i / ((int64_t)p.out_w * p.out_h)) * p.h * p.w;
    Taps r = dilated_taps(oh, p.stride_h, p.pad_top, p.kernel_h, dp.dilation_h, p.h);
    Taps c = dilated_taps(ow, p.stride_w, p.pad_left, p.kernel_w, dp.dilation_w, p.w);
    float acc = 0.f;
    for (int kh = r.lo; kh < r.hi; ++kh) {
      const int64_t row = (int64_t)(r.start + kh * dp.dilation_h) * p.w + c.start;
      for (int kw = c.lo; kw < c.hi; ++kw) {
        float v = load(xp, row + kw * dp.dilation_w);
        acc += v * v;
      }
    }
    store(y, i, sqrtf(acc));
  }
}

// dx = x * (sum over the windows holding x of dy / y, 0 where y == 0), in output order.
template <class S>
__global__ void l2_backward_kernel(const S* dy, const S* x, const S* y, S* dx, MnnPool2dDilatedParams dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t total = (int64_t)p.n * p.c * p.h * p.w;
  MNN_GRID_LOOP(i, total) {
    int w = (int)(i % p.w), h = (int)((i / p.w) % p.h);
    int64_t ob = (i / ((int64_t)p.w * p.h)) * p.out_h * p.out_w;
    float acc = 0.f;
    for (int kh = p.kernel_h - 1; kh >= 0; --kh) {
      int oh = window_of_tap(h, kh, p.stride_h, p.pad_top, dp.dilation_h, p.out_h);
      if (oh < 0) continue;
      for (int kw = p.kernel_w - 1; kw >= 0; --kw) {
        int ow = window_of_tap(w, kw, p.stride_w, p.pad_left, dp.dilation_w, p.out_w);
        if (ow < 0) continue;
        int64_t o = ob + (int64_t)oh * p.out_w + ow;
        float yo = load(y, o);
        acc += yo != 0.f ? load(dy, o) / yo : 0.f;
      }
    }
    store(dx, i, load(x, i) * acc);
  }
}

}  // namespace

void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& p) {
  int64_t n = y.numel();
  auto s = current_stream();
  with_storage_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    dilated_max_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(x.data<T>(), y.data<T>(),
                                                              argmax.data<int32_t>(), p);
  });
  check_launch("dilated_max_pool2d_forward");
}

void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p) {
  int64_t n = dx.numel();
  auto s = current_stream();
  with_storage_type(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    dilated_max_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<T>(), argmax.data<int32_t>(),
                                                               dx.data<T>(), p);
  });
  check_launch("dilated_max_pool2d_backward");
}

void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& p) {
  int64_t n = y.numel();
  auto s = current_stream();
  with_storage_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    l2_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(x.data<T>(), y.data<T>(), p);
  });
  check_launch("l2_pool2d_forward");
}

void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& p) {
  int64_t n = dx.numel();
  auto s = current_stream();
  with_storage_type(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    l2_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<T>(), x.data<T>(), y.data<T>(),
                                                      dx.data<T>(), p);
  });
  check_launch("l2_pool2d_backward");
}

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p) {
  int64_t n = y.numel();
  auto s = current_stream();
  with_storage_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool pairs = p.kernel_w == 2 && p.stride_w == 2 && p.pad_left == 0 && p.w % 2 == 0 &&
                       2 * p.out_w <= p.w && ((uintptr_t)x.raw() % (2 * sizeof(T))) == 0;
    with_index_type(x.numel() > n ? x.numel() : n, [&](auto itag) {
      using I = decltype(itag);
      if (pairs)
        max_forward_pairs_kernel<T, I><<<grid_for(n), kBlock, 0, s>>>(x.data<T>(), y.data<T>(),
                                                                      argmax.data<int32_t>(), p);
      else
        max_forward_kernel<T, I><<<grid_for(n), kBlock, 0, s>>>(x.data<T>(), y.data<T>(), argmax.data<int32_t>(), p);
    });
  });
  check_launch("max_pool2d_forward");
}

// p carries the forward's window (the state keeps it), so each input scans only the
// outputs that can cover it.
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p) {
  int64_t n = dx.numel();
  auto s = current_stream();
  int kh = p.kernel_h, kw = p.kernel_w, sh = p.stride_h, sw = p.stride_w, pt = p.pad_top, pl = p.pad_left;
  const bool disjoint = sh >= kh && sw >= kw && pt >= 0 && pl >= 0;
  with_storage_type(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool tiled = sh == kh && sw == kw && pt == 0 && pl == 0 && p.out_h * kh == p.h && p.out_w * kw == p.w;
    if (tiled && n) {
      // Pairs need every window start (even column, even row width) on a pair boundary.
      const bool pairs = kw == 2 && p.w % 2 == 0 && ((uintptr_t)dx.raw() % (2 * sizeof(T))) == 0;
      const int64_t outs = dy.numel();
      with_index_type(n, [&](auto itag) {
        using I = decltype(itag);
        if (pairs)
          max_backward_tiled_kernel<T, I, true><<<grid_for(outs), kBlock, 0, s>>>(dy.data<T>(), argmax.data<int32_t>(),
                                                                                  dx.data<T>(), p);
        else
          max_backward_tiled_kernel<T, I, false><<<grid_for(outs), kBlock, 0, s>>>(
              dy.data<T>(), argmax.data<int32_t>(), dx.data<T>(), p);
      });
      return;
    }
    if (disjoint && n) {
      const bool vec = aligned16(dx.raw());
      with_index_type(n > dy.numel() ? n : dy.numel(), [&](auto itag) {
        using I = decltype(itag);
        max_backward_disjoint_kernel<T, I><<<grid_for_items(n, vec ? Pack<T>::n : 1), kBlock, 0, s>>>(
            dy.data<T>(), argmax.data<int32_t>(), dx.data<T>(), p, vec);
      });
      return;
    }
    max_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<T>(), argmax.data<int32_t>(), dx.data<T>(), p,
                                                       kh, kw, sh, sw, pt, pl);
  });
  check_launch("max_pool2d_backward");
}

void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p) {
  int64_t n = y.numel();
  auto s = current_stream();
  with_storage_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    avg_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(x.data<T>(), y.data<T>(), p);
  });
  check_launch("avg_pool2d_forward");
}

void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p) {
  int64_t n = dx.numel();
  auto s = current_stream();
  with_storage_type(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    avg_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<T>(), dx.data<T>(), p);
  });
  check_launch("avg_pool2d_backward");
}

}  // namespace metalnn::cuda

#include "metalnn/backend/cpu/pooling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Float32 views of one (H, W) plane: float32 tensors are used in place, float16
// planes are widened into (or narrowed from) a per-chunk scratch buffer.
class Plane {
 public:
  Plane(const Tensor& t, int64_t plane) : t_(t), plane_(plane) {
    if (t.dtype() != DType::float32) buf_.resize((size_t)plane);
  }

 protected:
  const Tensor& t_;
  int64_t plane_;
  std::vector<float> buf_;  // empty for float32
};

class PlaneIn : Plane {
 public:
  using Plane::Plane;
  const float* get(int64_t i) {
    if (buf_.empty()) return t_.data<float>() + i * plane_;
    half_to_float_n(t_.data<uint16_t>() + i * plane_, buf_.data(), (size_t)plane_);
    return buf_.data();
  }
};

class PlaneOut : Plane {
 public:
  using Plane::Plane;
  float* get(int64_t i) { return buf_.empty() ? t_.data<float>() + i * plane_ : buf_.data(); }
  void commit(int64_t i) {
    if (!buf_.empty()) float_to_half_n(buf_.data(), t_.data<uint16_t>() + i * plane_, (size_t)plane_);
  }
};

// Planes per chunk: about 32k input elements, so small images still split across threads.
int64_t plane_grain(int64_t plane) { return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(plane, 1)); }

// v replaces the running maximum m when larger, or when v is the first NaN (NaN wins).
// Written without || so the compiler can turn it into vector compares and blends.
inline bool takes(float v, float m) { return (m == m) & !(v <= m); }

// Horizontal pairs (r[2k], r[2k+1]) -> the winner and 0/1 for its column.
void max_pairs(const float* __restrict r, float* __restrict m, int32_t* __restrict i, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    float a = r[2 * k], b = r[2 * k + 1];
    bool t = takes(b, a);
    m[k] = t ? b : a;
    i[k] = t;
  }
}

// 8- and 4-lane vectors (GCC/Clang vector extensions, lowered to AVX, SSE or NEON):
// the 2x2 rows are too short for the auto-vectoriser's loops (7 or 14 outputs).
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));

template <class V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
inline void store(void* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }
// Lane numbers 0, 1, 2, ... (filling lanes one by one is slow).
inline vi8 lanes(vi8) { return vi8{0, 1, 2, 3, 4, 5, 6, 7}; }
inline vi4 lanes(vi4) { return vi4{0, 1, 2, 3}; }

// Top and bottom pair winners of B outputs starting at o meet; the top wins ties, so
// the row-major first maximum wins; a NaN on top stays, a NaN below wins otherwise.
template <class VF, class VI>
inline void combine_2x2(const float* mt, const float* mb, const int32_t* it, const int32_t* ib, float* y,
                        int32_t* arg, int o, int32_t row, int32_t W) {
  VF a = load<VF>(mt + o), b = load<VF>(mb + o);
  VI t = (a == a) & ~(b <= a);  // takes(b, a), lane-wise
  VI ia = load<VI>(it + o), ibv = load<VI>(ib + o) + W;
  VI col = lanes(VI{}) * 2 + (row + 2 * o);
  store(y + o, (VF)((t & (VI)b) | (~t & (VI)a)));
  store(arg + o, col + ((t & ibv) | (~t & ia)));
}

// All OW outputs of a row in whole vectors; the last vector overlaps the one before,
// which only recomputes the same values.
inline void combine_row(const float* mt, const float* mb, const int32_t* it, const int32_t* ib, float* y,
                        int32_t* arg, int OW, int32_t row, int32_t W) {
  if (OW >= 8) {
    int o = 0;
    for (; o + 8 <= OW; o += 8) combine_2x2<vf8, vi8>(mt, mb, it, ib, y, arg, o, row, W);
    if (o < OW) combine_2x2<vf8, vi8>(mt, mb, it, ib, y, arg, OW - 8, row, W);
  } else if (OW >= 4) {
    combine_2x2<vf4, vi4>(mt, mb, it, ib, y, arg, 0, row, W);
    combine_2x2<vf4, vi4>(mt, mb, it, ib, y, arg, OW - 4, row, W);
  } else {
    for (int o = 0; o < OW; ++o) {
      bool t = takes(mb[o], mt[o]);
      y[o] = t ? mb[o] : mt[o];
      arg[o] = row + 2 * o + (t ? W + ib[o] : it[o]);
    }
  }
}

// 2x2 windows, stride 2, no padding (the MNIST case): horizontal pairs first over the
// whole plane, then the vertical meeting, one compare per loop so both vectorise.
void max_2x2(const float* x, float* y, int32_t* arg, float* pm, int32_t* pi, const MnnPool2dParams& p) {
  const int W = p.w, OW = p.out_w, OH = p.out_h;
  if (W == 2 * OW) {
    max_pairs(x, pm, pi, (int64_t)2 * OH * OW);  // rows 0 .. 2*OH-1 are contiguous pairs
  } else {
    for (int r = 0; r < 2 * OH; ++r) max_pairs(x + (int64_t)r * W, pm + (int64_t)r * OW, pi + (int64_t)r * OW, OW);
  }
  for (int oh = 0; oh < OH; ++oh) {
    const int64_t t = (int64_t)2 * oh * OW;
    combine_row(pm + t, pm + t + OW, pi + t, pi + t + OW, y + (int64_t)oh * OW, arg + (int64_t)oh * OW, OW,
                2 * oh * W, W);
  }
}

// Outputs ow whose column ow*stride_w - pad_left + kw lies inside [0, W): [lo, hi).
inline void column_range(const MnnPool2dParams& p, int kw, int& lo, int& hi) {
  int off = kw - p.pad_left;  // column of output ow is ow*stride_w + off
  lo = off >= 0 ? 0 : (-off + p.stride_w - 1) / p.stride_w;
  hi = p.w - 1 - off < 0 ? 0 : std::min(p.out_w, (p.w - 1 - off) / p.stride_w + 1);
  if (hi < lo) hi = lo;
}

// Input rows [hs, he) that window row oh covers.
inline void row_range(const MnnPool2dParams& p, int oh, int& hs, int& he) {
  int h0 = oh * p.stride_h - p.pad_top;
  hs = std::max(h0, 0);
  he = std::min(h0 + p.kernel_h, p.h);
}

// B values src[(o + j) * stride]: stride 1 and 2 are compile-time (plain and
// de-interleaving loads), SW = 0 reads the runtime stride sw.
template <class VF, int SW>
inline VF gather(const float* src, int o, int sw) {
  if constexpr (SW == 1) {
    return load<VF>(src + o);
  } else {
    VF v;
    for (int j = 0; j < (int)(sizeof(VF) / sizeof(float)); ++j) v[j] = src[(int64_t)(o + j) * (SW ? SW : sw)];
    return v;
  }
}

// Rows of a plane with pad_left / pad_right zero columns around them, so vector loads
// at the borders stay in memory (masks keep the padding out of every result). Without
// horizontal padding the plane is used as it is.
class PaddedRows {
 public:
  explicit PaddedRows(const MnnPool2dParams& p) : p_(p) {
    if (p.pad_left || p.pad_right) {
      ld_ = (int64_t)p.pad_left + p.w + p.pad_right + 16;
      buf_.assign((size_t)(ld_ * p.h), 0.f);
    }
  }
  // Row h starts at result + h * ld(); column c (possibly negative) is at index c.
  const float* rows(const float* x) {
    if (buf_.empty()) return x;
    for (int h = 0; h < p_.h; ++h)
      std::memcpy(buf_.data() + h * ld_ + p_.pad_left, x + (int64_t)h * p_.w, sizeof(float) * (size_t)p_.w);
    return buf_.data() + p_.pad_left;
  }
  int64_t ld() const { return buf_.empty() ? p_.w : ld_; }

 private:
  const MnnPool2dParams& p_;
  std::vector<float> buf_;
  int64_t ld_ = 0;
};

// Lanes of B outputs (o, oh): column of window element kw for each lane.
template <class VI>
inline VI window_columns(const MnnPool2dParams& p, int s, int o) {
  return lanes(VI{}) * s + (o * s - p.pad_left);
}

// Max over the windows of B outputs starting at column o of output row oh, kept in
// registers; elements are visited in row-major window order, and b < 0 marks "no real
// element yet" so padding never wins. A pure function of the input, so the last block
// may overlap the one before.
template <class VF, class VI, int SW>
inline void max_block(const float* xr, int64_t ld, int hs, int he, int o, const MnnPool2dParams& p, float* y,
                      int32_t* arg) {
  const int s = SW ? SW : p.stride_w;
  const VI col0 = window_columns<VI>(p, s, o);
  VF m = {};
  VI b = VI{} - 1;
  for (int h = hs; h < he; ++h) {
    const float* row = xr + h * ld - p.pad_left;
    for (int kw = 0; kw < p.kernel_w; ++kw) {
      VI col = col0 + kw;
      VI valid = (col >= 0) & (col < p.w);
      VF v = gather<VF, SW>(row + kw, o, s);
      VI t = valid & ((b < 0) | ((m == m) & ~(v <= m)));
      m = (VF)((t & (VI)v) | (~t & (VI)m));
      b = (t & (col + h * p.w)) | (~t & b);
    }
  }
  store(y + o, m);
  store(arg + o, b);
}

// Sum (or average) over the windows of B outputs, in registers like max_block.
template <class VF, class VI, int SW>
inline void avg_block(const float* xr, int64_t ld, int hs, int he, int o, const MnnPool2dParams& p, float* y) {
  const int s = SW ? SW : p.stride_w;
  const VI col0 = window_columns<VI>(p, s, o);
  VF acc = {};
  VI count = {};
  for (int kw = 0; kw < p.kernel_w; ++kw) {
    VI col = col0 + kw;
    VI valid = (col >= 0) & (col < p.w);
    count -= valid;  // valid lanes are -1
    for (int h = hs; h < he; ++h) acc += (VF)((VI)gather<VF, SW>(xr + h * ld - p.pad_left + kw, o, s) & valid);
  }
  VF d = p.count_include_pad ? VF{} + (float)(p.kernel_h * p.kernel_w)
                             : __builtin_convertvector(count * (he - hs), VF);
  store(y + o, acc / d);
}

// Runs blk.template run<VF, VI>(o) over the outputs of a row in whole vectors (the last
// one overlapping), or lane by lane for rows narrower than 4.
template <class Blk>
inline void row_blocks(int OW, Blk&& blk) {
  if (OW >= 8) {
    int o = 0;
    for (; o + 8 <= OW; o += 8) blk.template run<vf8, vi8>(o);
    if (o < OW) blk.template run<vf8, vi8>(OW - 8);
  } else if (OW >= 4) {
    blk.template run<vf4, vi4>(0);
    blk.template run<vf4, vi4>(OW - 4);
  } else {
    blk.scalar(OW);
  }
}

// One output row for row_blocks: input rows [hs, he) of the padded plane xr (row
// stride ld) and the row's outputs y.
struct RowWindow {
  const float* xr;
  int64_t ld;
  int hs, he;
  const MnnPool2dParams& p;
  float* y;
};

template <int SW>
struct MaxRow : RowWindow {
  int32_t* arg;
  template <class VF, class VI>
  void run(int o) const { max_block<VF, VI, SW>(xr, ld, hs, he, o, p, y, arg); }
  void scalar(int OW) const {
    for (int o = 0; o < OW; ++o) {
      float m = 0.f;
      int32_t b = -1;
      for (int h = hs; h < he; ++h)
        for (int kw = 0; kw < p.kernel_w; ++kw) {
          int c = o * p.stride_w - p.pad_left + kw;
          if (c < 0 || c >= p.w) continue;
          float v = xr[h * ld + c];
          if (b < 0 || takes(v, m)) {
            m = v;
            b = h * p.w + c;
          }
        }
      y[o] = m;
      arg[o] = b;
    }
  }
};

template <int SW>
struct AvgRow : RowWindow {
  template <class VF, class VI>
  void run(int o) const { avg_block<VF, VI, SW>(xr, ld, hs, he, o, p, y); }
  void scalar(int OW) const {
    for (int o = 0; o < OW; ++o) {
      float acc = 0.f;
      int count = 0;
      for (int kw = 0; kw < p.kernel_w; ++kw) {
        int c = o * p.stride_w - p.pad_left + kw;
        if (c < 0 || c >= p.w) continue;
        ++count;
        for (int h = hs; h < he; ++h) acc += xr[h * ld + c];
      }
      y[o] = acc / (float)(p.count_include_pad ? p.kernel_h * p.kernel_w : count * (he - hs));
    }
  }
};

template <int SW>
void max_general(const float* x, float* y, int32_t* arg, PaddedRows& pad, const MnnPool2dParams& p) {
  const float* xr = pad.rows(x);
  for (int oh = 0; oh < p.out_h; ++oh) {
    int hs, he;
    row_range(p, oh, hs, he);
    const int64_t r = (int64_t)oh * p.out_w;
    row_blocks(p.out_w, MaxRow<SW>{{xr, pad.ld(), hs, he, p, y + r}, arg + r});
  }
}

template <int SW>
void avg_forward_plane(const float* x, float* y, PaddedRows& pad, const MnnPool2dParams& p) {
  const float* xr = pad.rows(x);
  for (int oh = 0; oh < p.out_h; ++oh) {
    int hs, he;
    row_range(p, oh, hs, he);
    row_blocks(p.out_w, AvgRow<SW>{{xr, pad.ld(), hs, he, p, y + (int64_t)oh * p.out_w}});
  }
}

// dst[o * stride] += g[o] for o in [lo, hi).
template <int SW>
inline void scatter_add_row(const float* g, int sw, float* dst, int lo, int hi) {
  int o = lo;
  if constexpr (SW == 1)
    for (; o + 8 <= hi; o += 8) store(dst + o, load<vf8>(dst + o) + load<vf8>(g + o));
  for (; o < hi; ++o) dst[(int64_t)o * (SW ? SW : sw)] += g[o];
}

// The divisor of each output in row oh: kH*kW, or the number of real elements.
inline void divisors(const MnnPool2dParams& p, int oh, const int* cols, float* d) {
  if (p.count_include_pad) {
    for (int ow = 0; ow < p.out_w; ++ow) d[ow] = (float)(p.kernel_h * p.kernel_w);
    return;
  }
  int hs, he;
  row_range(p, oh, hs, he);
  for (int ow = 0; ow < p.out_w; ++ow) d[ow] = (float)((he - hs) * cols[ow]);
}

// Real columns in each output column's window (the same for every row).
std::vector<int> real_columns(const MnnPool2dParams& p) {
  std::vector<int> cols((size_t)p.out_w);
  for (int ow = 0; ow < p.out_w; ++ow) {
    int w0 = ow * p.stride_w - p.pad_left;
    cols[ow] = std::min(w0 + p.kernel_w, p.w) - std::max(w0, 0);
  }
  return cols;
}

template <int SW>
void avg_backward_plane(const float* gy, float* gx, float* g, float* d, const int* cols, const MnnPool2dParams& p) {
  const int W = p.w, OW = p.out_w;
  std::memset(gx, 0, sizeof(float) * (size_t)p.h * W);
  for (int oh = 0; oh < p.out_h; ++oh) {
    int hs, he;
    row_range(p, oh, hs, he);
    divisors(p, oh, cols, d);
    const float* go = gy + (int64_t)oh * OW;
    for (int ow = 0; ow < OW; ++ow) g[ow] = go[ow] / d[ow];
    for (int h = hs; h < he; ++h) {
      for (int kw = 0; kw < p.kernel_w; ++kw) {
        int lo, hi;
        column_range(p, kw, lo, hi);
        scatter_add_row<SW>(g, p.stride_w, gx + (int64_t)h * W + kw - p.pad_left, lo, hi);
      }
    }
  }
}

// Calls f with the stride as a compile-time constant where one is specialised.
template <class F>
inline void by_stride(int sw, F&& f) {
  if (sw == 1) f(std::integral_constant<int, 1>{});
  else if (sw == 2) f(std::integral_constant<int, 2>{});
  else f(std::integral_constant<int, 0>{});
}

bool is_2x2_s2(const MnnPool2dParams& p) {
  return p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_top == 0 &&
         p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
}

// Taps [lo, hi) of a dilated window along one axis that land inside [0, size); the window of
// output o starts at o * stride - pad.
struct Taps {
  int lo, hi, start;
};

inline Taps taps(int o, int stride, int pad, int k, int d, int size) {
  const int start = o * stride - pad;
  int lo = start >= 0 ? 0 : (-start + d - 1) / d;
  int hi = start + (k - 1) * d < size ? k : (size - 1 - start) / d + 1;
  if (size - 1 - start < 0) hi = 0;
  return {lo, hi < lo ? lo : hi, start};
}

// Per-axis tap ranges of every output row / column (the same for all planes).
std::vector<Taps> axis_taps(int out, int stride, int pad, int k, int d, int size) {
  std::vector<Taps> t((size_t)out);
  for (int o = 0; o < out; ++o) t[(size_t)o] = taps(o, stride, pad, k, d, size);
  return t;
}

struct DilatedWindows {
  std::vector<Taps> rows, cols;
  explicit DilatedWindows(const MnnPool2dDilatedParams& dp)
      : rows(axis_taps(dp.pool.out_h, dp.pool.stride_h, dp.pool.pad_top, dp.pool.kernel_h, dp.dilation_h, dp.pool.h)),
        cols(axis_taps(dp.pool.out_w, dp.pool.stride_w, dp.pool.pad_left, dp.pool.kernel_w, dp.dilation_w,
                       dp.pool.w)) {}
};

void dilated_max_plane(const float* x, float* y, int32_t* arg, const DilatedWindows& win,
                       const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  for (int oh = 0; oh < p.out_h; ++oh) {
    const Taps& r = win.rows[(size_t)oh];
    for (int ow = 0; ow < p.out_w; ++ow) {
      const Taps& c = win.cols[(size_t)ow];
      float m = 0.f;
      int32_t b = -1;
      // Row-major window order: the first maximum wins, a NaN wins.
      for (int kh = r.lo; kh < r.hi; ++kh) {
        const int h = r.start + kh * dp.dilation_h;
        const float* row = x + (int64_t)h * p.w;
        for (int kw = c.lo; kw < c.hi; ++kw) {
          const int w = c.start + kw * dp.dilation_w;
          const float v = row[w];
          if (b < 0 || takes(v, m)) {
            m = v;
            b = h * p.w + w;
          }
        }
      }
      y[(int64_t)oh * p.out_w + ow] = m;
      arg[(int64_t)oh * p.out_w + ow] = b;
    }
  }
}

void l2_plane(const float* x, float* y, const DilatedWindows& win, const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  for (int oh = 0; oh < p.out_h; ++oh) {
    const Taps& r = win.rows[(size_t)oh];
    for (int ow = 0; ow < p.out_w; ++ow) {
      const Taps& c = win.cols[(size_t)ow];
      float acc = 0.f;
      for (int kh = r.lo; kh < r.hi; ++kh) {
        const float* row = x + (int64_t)(r.start + kh * dp.dilation_h) * p.w + c.start;
        for (int kw = c.lo; kw < c.hi; ++kw) {
          const float v = row[kw * dp.dilation_w];
          acc += v * v;
        }
      }
      y[(int64_t)oh * p.out_w + ow] = std::sqrt(acc);
    }
  }
}

// dx = x * s, s[i] = sum over the windows holding i of dy / y, added in output order.
void l2_backward_plane(const float* gy, const float* x, const float* y, float* gx, float* s,
                       const DilatedWindows& win, const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t plane = (int64_t)p.h * p.w;
  std::memset(s, 0, sizeof(float) * (size_t)plane);
  for (int oh = 0; oh < p.out_h; ++oh) {
    const Taps& r = win.rows[(size_t)oh];
    for (int ow = 0; ow < p.out_w; ++ow) {
      const Taps& c = win.cols[(size_t)ow];
      const int64_t o = (int64_t)oh * p.out_w + ow;
      // y = 0 only when every tap is 0: the (sub)gradient 0 is taken there.
      const float q = y[o] != 0.f ? gy[o] / y[o] : 0.f;
      for (int kh = r.lo; kh < r.hi; ++kh) {
        float* row = s + (int64_t)(r.start + kh * dp.dilation_h) * p.w + c.start;
        for (int kw = c.lo; kw < c.hi; ++kw) row[kw * dp.dilation_w] += q;
      }
    }
  }
  for (int64_t i = 0; i < plane; ++i) gx[i] = x[i] * s[i];
}

}  // namespace

void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  const DilatedWindows win(dp);
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn in(x, in_plane);
    PlaneOut out(y, out_plane);
    for (int64_t i = b; i < e; ++i) {
      dilated_max_plane(in.get(i), out.get(i), argmax.data<int32_t>() + i * out_plane, win, dp);
      out.commit(i);
    }
  });
}

void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  const DilatedWindows win(dp);
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn in(x, in_plane);
    PlaneOut out(y, out_plane);
    for (int64_t i = b; i < e; ++i) {
      l2_plane(in.get(i), out.get(i), win, dp);
      out.commit(i);
    }
  });
}

void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& dp) {
  const MnnPool2dParams& p = dp.pool;
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  const DilatedWindows win(dp);
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn g(dy, out_plane), yin(y, out_plane), xin(x, in_plane);
    PlaneOut out(dx, in_plane);
    std::vector<float> s((size_t)in_plane);
    for (int64_t i = b; i < e; ++i) {
      const float* gy = g.get(i);
      const float* yv = yin.get(i);
      l2_backward_plane(gy, xin.get(i), yv, out.get(i), s.data(), win, dp);
      out.commit(i);
    }
  });
}

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p) {
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  const bool fast = is_2x2_s2(p);
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn in(x, in_plane);
    PlaneOut out(y, out_plane);
    std::vector<float> pm(fast ? (size_t)(2 * out_plane) : 0);
    std::vector<int32_t> pi(pm.size());
    PaddedRows pad(p);
    by_stride(p.stride_w, [&](auto sw) {
      for (int64_t i = b; i < e; ++i) {
        int32_t* arg = argmax.data<int32_t>() + i * out_plane;
        if (fast) max_2x2(in.get(i), out.get(i), arg, pm.data(), pi.data(), p);
        else max_general<decltype(sw)::value>(in.get(i), out.get(i), arg, pad, p);
        out.commit(i);
      }
    });
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p) {
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn g(dy, out_plane);
    PlaneOut out(dx, in_plane);
    for (int64_t i = b; i < e; ++i) {
      const float* gy = g.get(i);
      const int32_t* arg = argmax.data<int32_t>() + i * out_plane;
      float* gx = out.get(i);
      std::memset(gx, 0, sizeof(float) * (size_t)in_plane);
      // In order, so overlapping windows accumulate deterministically.
      for (int64_t o = 0; o < out_plane; ++o) gx[arg[o]] += gy[o];
      out.commit(i);
    }
  });
}

void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p) {
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn in(x, in_plane);
    PlaneOut out(y, out_plane);
    PaddedRows pad(p);
    by_stride(p.stride_w, [&](auto sw) {
      for (int64_t i = b; i < e; ++i) {
        avg_forward_plane<decltype(sw)::value>(in.get(i), out.get(i), pad, p);
        out.commit(i);
      }
    });
  });
}

void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p) {
  const int64_t in_plane = (int64_t)p.h * p.w, out_plane = (int64_t)p.out_h * p.out_w;
  const std::vector<int> cols = real_columns(p);
  parallel_for((int64_t)p.n * p.c, plane_grain(in_plane), [&](int64_t b, int64_t e) {
    PlaneIn g(dy, out_plane);
    PlaneOut out(dx, in_plane);
    std::vector<float> gs((size_t)p.out_w), d((size_t)p.out_w);
    by_stride(p.stride_w, [&](auto sw) {
      for (int64_t i = b; i < e; ++i) {
        avg_backward_plane<decltype(sw)::value>(g.get(i), out.get(i), gs.data(), d.data(), cols.data(), p);
        out.commit(i);
      }
    });
  });
}

}  // namespace metalnn::cpu

// Internal to the Winograd tile transforms: the vector type (tiles or channels as lanes),
// the transform matrices as compile-time functors, `apply` (one matrix times a column of
// vectors, zero entries and +-p point pairs folded at compile time), and tile positions.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "metalnn/backend/cpu/conv_winograd_matrices.h"
#include "metalnn/backend/cpu/conv_winograd_tiles.h"

namespace metalnn::cpu::winograd {

#if defined(__AVX512F__)
constexpr int VW = 16;
#elif defined(__AVX__)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif
typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef float vf8 __attribute__((vector_size(8 * sizeof(float))));  // one AVX register

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }

// The matrices in float, as compile-time constants: after unrolling, zero entries drop out.
template <int M, int R>
struct F {
  static constexpr int A = M + R - 1;
  static constexpr Matrices<M, R> d = make_matrices<M, R>();
};
// The matrices as functors (compile-time calls in `apply`): B^T, A^T, A, G and G^T, each one
// member of Matrices read straight or transposed.
template <int M, int R, auto Member, bool Transposed>
struct MatrixOf {
  constexpr float operator()(int i, int k) const {
    return (float)(Transposed ? (F<M, R>::d.*Member)[k][i] : (F<M, R>::d.*Member)[i][k]);
  }
};
template <int M, int R>
using BT = MatrixOf<M, R, &Matrices<M, R>::BT, false>;
template <int M, int R>
using AT = MatrixOf<M, R, &Matrices<M, R>::AT, false>;
template <int M, int R>
using AM = MatrixOf<M, R, &Matrices<M, R>::AT, true>;
template <int M, int R>
using G = MatrixOf<M, R, &Matrices<M, R>::G, false>;
template <int M, int R>
using GT = MatrixOf<M, R, &Matrices<M, R>::G, true>;

// out[i] = sum_k Mat(i, k) * in[k] for a compile-time matrix whose rows (kRows) or columns
// (kCols) are the points 0, p1, -p1, p2, -p2, ..., infinity. The entries of a +-p pair differ
// only in sign by the parity of the other index (checked below), so a pair costs one
// even and one odd sum: about half the multiplies.
enum Pairs { kRows, kCols };

template <int ROWS, int COLS, Pairs P, typename Mat, typename Vec>
inline void apply(Mat mat, const Vec* in, Vec* out) {
  constexpr int N = P == kRows ? ROWS : COLS;  // the points' axis
  auto first_of_pair = [](int i) { return i % 2 == 1 && i + 1 < N - 1; };
  if constexpr (P == kRows) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      if (i % 2 == 0 && i > 0 && i < N - 1) continue;  // second of a pair: done with the first
      Vec even = Vec{}, odd = Vec{};
#pragma GCC unroll 8
      for (int k = 0; k < COLS; ++k)
        if (mat(i, k) != 0.f) (k % 2 ? odd : even) += mat(i, k) * in[k];
      out[i] = even + odd;
      if (first_of_pair(i)) out[i + 1] = even - odd;
    }
  } else {
    Vec sum[COLS], diff[COLS];
#pragma GCC unroll 8
    for (int k = 1; k < COLS; k += 2)
      if (first_of_pair(k)) sum[k] = in[k] + in[k + 1], diff[k] = in[k] - in[k + 1];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      Vec s = Vec{};
#pragma GCC unroll 8
      for (int k = 0; k < COLS; ++k) {
        if (mat(r, k) == 0.f) continue;
        if (first_of_pair(k)) s += mat(r, k) * (r % 2 ? diff[k] : sum[k]);
        else if (k % 2 == 0 && k > 0 && k < N - 1) continue;  // second of a pair
        else s += mat(r, k) * in[k];
      }
      out[r] = s;
    }
  }
}

// The pairing `apply` relies on: entries of the point -p equal those of p times (-1)^(other index).
template <int ROWS, int COLS, Pairs P, typename Mat>
constexpr bool pairs_mirror(Mat mat) {
  constexpr int N = P == kRows ? ROWS : COLS;
  for (int i = 1; i + 1 < N - 1; i += 2)
    for (int k = 0; k < (P == kRows ? COLS : ROWS); ++k) {
      const double a = P == kRows ? mat(i, k) : mat(k, i), b = P == kRows ? mat(i + 1, k) : mat(k, i + 1);
      const double want = k % 2 ? -a : a;
      if (absd(b - want) > 1e-6 * (absd(a) + 1e-30)) return false;
    }
  return true;
}

// out = Mat X Mat^T for one tile of vectors (Mat: OUT x IN, points along P): X(k, l) comes
// from get(k, l), out(i, j) goes to put(i, j, v). Down the columns first, then along the rows.
template <int OUT, int IN, Pairs P, typename Mat, typename Get, typename Put>
__attribute__((always_inline)) inline void sandwich(Mat mat, Get get, Put put) {
  using Vec = decltype(get(0, 0));
  Vec tmp[OUT][IN];
#pragma GCC unroll 8
  for (int l = 0; l < IN; ++l) {
    Vec col[IN], res[OUT];
#pragma GCC unroll 8
    for (int k = 0; k < IN; ++k) col[k] = get(k, l);
    apply<OUT, IN, P>(mat, col, res);
#pragma GCC unroll 8
    for (int i = 0; i < OUT; ++i) tmp[i][l] = res[i];
  }
#pragma GCC unroll 8
  for (int i = 0; i < OUT; ++i) {
    Vec row[OUT];
    apply<OUT, IN, P>(mat, tmp[i], row);
#pragma GCC unroll 8
    for (int j = 0; j < OUT; ++j) put(i, j, row[j]);
  }
}

// Where tile t of a block lies: its image (relative to the block's first), and the top-left
// output position of the tile.
struct TilePos {
  int32_t image, oy, ox;
};
inline const TilePos* tile_positions(const Geometry& g, const TileBlock& b, int M) {
  thread_local std::vector<TilePos> pos;
  pos.resize((size_t)b.count());
  const int64_t n0 = b.first_image();
  for (int64_t t = 0; t < b.count(); ++t) {
    const int64_t row = b.first_row + t / g.tw;
    pos[(size_t)t] = {(int32_t)(row / g.th - n0), (int32_t)(row % g.th * M), (int32_t)(t % g.tw * M)};
  }
  return pos.data();
}

}  // namespace metalnn::cpu::winograd

// Winograd transforms F(m, r) built at compile time by the Cook-Toom construction:
// correlation y = A^T [(G g) . (B^T d)], with alpha = m + r - 1 evaluation points
// 0, 1, -1, 2, -2, 1/2, -1/2 (as many as needed) and infinity.
//  - G (alpha x r) and A (alpha x m) evaluate the filter and output polynomials at the
//    points (the infinity row picks the leading coefficient);
//  - B = V^-1, V the alpha x alpha Vandermonde matrix of the points (interpolation).
// Correlation is the transpose of polynomial multiplication, hence A^T and B^T.
// B^T rows are scaled to max |entry| 1 and the scale moved into G (smaller float32 error).
#pragma once

namespace metalnn::cpu::winograd {

template <int M, int R>
struct Matrices {
  static constexpr int alpha = M + R - 1;
  double AT[M][alpha] = {};      // output transform, m x alpha
  double G[alpha][R] = {};       // filter transform, alpha x r
  double BT[alpha][alpha] = {};  // input transform, alpha x alpha
};

constexpr double point(int i) {
  constexpr double pts[7] = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5};
  return pts[i];
}

constexpr double power(double x, int k) {
  double v = 1.0;
  for (int i = 0; i < k; ++i) v *= x;
  return v;
}

constexpr double absd(double x) { return x < 0 ? -x : x; }

template <int M, int R>
constexpr Matrices<M, R> make_matrices() {
  static_assert(M + R - 1 <= 8, "at most 7 finite points");
  constexpr int A = M + R - 1;
  Matrices<M, R> t{};
  // V (rows: points, last row infinity) inverted by Gauss-Jordan with partial pivoting.
  double v[A][2 * A] = {};
  for (int i = 0; i < A; ++i) {
    for (int j = 0; j < A; ++j) v[i][j] = i < A - 1 ? power(point(i), j) : (j == A - 1 ? 1.0 : 0.0);
    v[i][A + i] = 1.0;
  }
  for (int c = 0; c < A; ++c) {
    int piv = c;
    for (int i = c + 1; i < A; ++i)
      if (absd(v[i][c]) > absd(v[piv][c])) piv = i;
    for (int j = 0; j < 2 * A; ++j) {
      const double s = v[c][j];
      v[c][j] = v[piv][j];
      v[piv][j] = s;
    }
    const double d = v[c][c];
    for (int j = 0; j < 2 * A; ++j) v[c][j] /= d;
    for (int i = 0; i < A; ++i) {
      if (i == c) continue;
      const double f = v[i][c];
      for (int j = 0; j < 2 * A; ++j) v[i][j] -= f * v[c][j];
    }
  }
  // B^T = (V^-1)^T: B^T[i][k] = Vinv[k][i].
  for (int i = 0; i < A; ++i)
    for (int k = 0; k < A; ++k) t.BT[i][k] = v[k][A + i];
  for (int i = 0; i < A; ++i) {
    for (int j = 0; j < R; ++j) t.G[i][j] = i < A - 1 ? power(point(i), j) : (j == R - 1 ? 1.0 : 0.0);
    for (int a = 0; a < M; ++a) t.AT[a][i] = i < A - 1 ? power(point(i), a) : (a == M - 1 ? 1.0 : 0.0);
  }
  for (int i = 0; i < A; ++i) {
    double s = 0.0;
    for (int k = 0; k < A; ++k) s = absd(t.BT[i][k]) > s ? absd(t.BT[i][k]) : s;
    for (int k = 0; k < A; ++k) t.BT[i][k] /= s;
    for (int j = 0; j < R; ++j) t.G[i][j] *= s;
  }
  return t;
}

// Largest deviation of A^T [(G e_q) . (B^T e_s)] from the correlation's 0/1 pattern
// [s == a + q], over all basis vectors: zero up to rounding when the matrices are right.
template <int M, int R>
constexpr double construction_error() {
  constexpr auto t = make_matrices<M, R>();
  double worst = 0.0;
  for (int a = 0; a < M; ++a)
    for (int q = 0; q < R; ++q)
      for (int s = 0; s < M + R - 1; ++s) {
        double y = 0.0;
        for (int i = 0; i < M + R - 1; ++i) y += t.AT[a][i] * t.G[i][q] * t.BT[i][s];
        const double e = absd(y - (s == a + q ? 1.0 : 0.0));
        worst = e > worst ? e : worst;
      }
  return worst;
}

}  // namespace metalnn::cpu::winograd

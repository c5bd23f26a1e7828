// MSL as C++ (clang >= 15): scalar and vector types, address-space qualifiers and the
// math builtins our kernels use. No <cmath>: only what MSL has is declared, so a kernel
// that calls erf or expm1 fails here as it would on a Mac.
#pragma once
#ifndef __METAL_VERSION__
#define __METAL_VERSION__ 300
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Strict mode (-DMSLEMU_STRICT, compile only): distinct address spaces, so mixing a device
// pointer with a threadgroup or thread one is a compile error as in MSL.
#ifdef MSLEMU_STRICT
#define device __attribute__((address_space(1)))
#define constant __attribute__((address_space(2)))
#define threadgroup __attribute__((address_space(3)))
#else
#define device
#define constant
#define threadgroup
#endif
#define thread

#define INFINITY __builtin_inff()
#define HUGE_VALF __builtin_huge_valf()
#define NAN __builtin_nanf("")
#define FLT_MAX 3.402823466e+38f

namespace metal {

typedef _Float16 half;
typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;

#define MSLEMU_VEC(T, N) typedef T T##N __attribute__((ext_vector_type(N)));
#define MSLEMU_VECS(T) MSLEMU_VEC(T, 2) MSLEMU_VEC(T, 3) MSLEMU_VEC(T, 4)
MSLEMU_VECS(float) MSLEMU_VECS(half) MSLEMU_VECS(int) MSLEMU_VECS(uint) MSLEMU_VECS(short)
MSLEMU_VECS(ushort) MSLEMU_VECS(char) MSLEMU_VECS(uchar) MSLEMU_VECS(bool)
#undef MSLEMU_VECS
#undef MSLEMU_VEC

namespace detail {
template <class V> struct vec_info { typedef V elem; static constexpr int n = 1; };
template <class T, int N> struct vec_info<T __attribute__((ext_vector_type(N)))> { typedef T elem; static constexpr int n = N; };

// Appends the components of each argument (scalars or vectors) to v, as MSL constructors do.
template <class V> inline void fill(V&, int) {}
template <class V, class A, class... R> inline void fill(V& v, int i, A a, R... r) {
  typedef typename vec_info<V>::elem E;
  if constexpr (vec_info<A>::n == 1) {
    v[i] = (E)a;
  } else {
    for (int k = 0; k < vec_info<A>::n; ++k) v[i + k] = (E)a[k];
  }
  fill(v, i + vec_info<A>::n, r...);
}
template <class V, class... A> inline V make(A... a) {
  V v = {};
  if constexpr (sizeof...(A) == 1 && ((vec_info<A>::n == 1) && ...)) {
    for (int i = 0; i < vec_info<V>::n; ++i) fill(v, i, a...);  // splat
  } else {
    fill(v, 0, a...);
  }
  return v;
}
}  // namespace detail

// float4(a, b, c, d), float4(xy, zw), float4(s): function-like macros, so `float4 v` still names the type.
#define float2(...) ::metal::detail::make<::metal::float2>(__VA_ARGS__)
#define float3(...) ::metal::detail::make<::metal::float3>(__VA_ARGS__)
#define float4(...) ::metal::detail::make<::metal::float4>(__VA_ARGS__)
#define half2(...) ::metal::detail::make<::metal::half2>(__VA_ARGS__)
#define half3(...) ::metal::detail::make<::metal::half3>(__VA_ARGS__)
#define half4(...) ::metal::detail::make<::metal::half4>(__VA_ARGS__)
#define int2(...) ::metal::detail::make<::metal::int2>(__VA_ARGS__)
#define int3(...) ::metal::detail::make<::metal::int3>(__VA_ARGS__)
#define int4(...) ::metal::detail::make<::metal::int4>(__VA_ARGS__)
#define uint2(...) ::metal::detail::make<::metal::uint2>(__VA_ARGS__)
#define uint3(...) ::metal::detail::make<::metal::uint3>(__VA_ARGS__)
#define uint4(...) ::metal::detail::make<::metal::uint4>(__VA_ARGS__)

// ---- math (float computed, half overloads round once; vectors elementwise) ----
#define MSLEMU_F1(name, expr)                                            \
  inline float name(float x) { return expr; }                            \
  inline half name(half h) { float x = (float)h; return (half)(expr); }  \
  template <class V, int N = detail::vec_info<V>::n, class = char[N > 1 ? 1 : -1]> \
  inline V name(V v) { for (int i = 0; i < N; ++i) v[i] = name(v[i]); return v; }
MSLEMU_F1(exp, __builtin_expf(x))
MSLEMU_F1(exp2, __builtin_exp2f(x))
MSLEMU_F1(log, __builtin_logf(x))
MSLEMU_F1(log2, __builtin_log2f(x))
MSLEMU_F1(tanh, __builtin_tanhf(x))
MSLEMU_F1(sqrt, __builtin_sqrtf(x))
MSLEMU_F1(rsqrt, 1.f / __builtin_sqrtf(x))
MSLEMU_F1(fabs, __builtin_fabsf(x))
MSLEMU_F1(floor, __builtin_floorf(x))
MSLEMU_F1(ceil, __builtin_ceilf(x))
MSLEMU_F1(round, __builtin_roundf(x))
MSLEMU_F1(trunc, __builtin_truncf(x))
MSLEMU_F1(sin, __builtin_sinf(x))
MSLEMU_F1(cos, __builtin_cosf(x))
MSLEMU_F1(isnan, x != x)
MSLEMU_F1(isinf, __builtin_isinf(x))
#undef MSLEMU_F1

inline float pow(float x, float y) { return __builtin_powf(x, y); }
inline float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
// MSL fmax/fmin return the other operand when one is NaN (IEEE maxNum), as C's fmaxf.
inline float fmax(float a, float b) { return __builtin_fmaxf(a, b); }
inline float fmin(float a, float b) { return __builtin_fminf(a, b); }
inline half fmax(half a, half b) { return (half)__builtin_fmaxf(a, b); }
inline half fmin(half a, half b) { return (half)__builtin_fminf(a, b); }
template <class T> inline T max(T a, T b) { return a > b ? a : b; }
template <class T> inline T min(T a, T b) { return a < b ? a : b; }
inline float max(float a, float b) { return fmax(a, b); }
inline float min(float a, float b) { return fmin(a, b); }
inline int abs(int x) { return x < 0 ? -x : x; }
inline float abs(float x) { return __builtin_fabsf(x); }
inline half abs(half x) { return (half)__builtin_fabsf(x); }
template <class T> inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
// select(a, b, c) = c ? b : a
template <class T> inline T select(T a, T b, bool c) { return c ? b : a; }
template <class T, class U> inline T as_type(U u) {
  static_assert(sizeof(T) == sizeof(U), "as_type needs equal sizes");
  T t;
  memcpy(&t, &u, sizeof t);
  return t;
}

// ---- synchronisation flags and atomics (fibers are cooperative, so plain ops are atomic) ----
enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
inline mem_flags operator|(mem_flags a, mem_flags b) { return (mem_flags)((int)a | (int)b); }
enum memory_order { memory_order_relaxed };

template <class T> struct atomic { T value; };
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<float> atomic_float;

#define MSLEMU_ATOMIC_OPS(AS)                                                                         \
  template <class T> inline T atomic_load_explicit(AS atomic<T>* a, memory_order) { return a->value; } \
  template <class T> inline void atomic_store_explicit(AS atomic<T>* a, T v, memory_order) { a->value = v; } \
  template <class T> inline T atomic_fetch_add_explicit(AS atomic<T>* a, T v, memory_order) {          \
    T old = a->value; a->value = old + v; return old; }                                                \
  template <class T> inline T atomic_fetch_sub_explicit(AS atomic<T>* a, T v, memory_order) {          \
    T old = a->value; a->value = old - v; return old; }                                                \
  template <class T> inline T atomic_fetch_max_explicit(AS atomic<T>* a, T v, memory_order) {          \
    T old = a->value; a->value = old > v ? old : v; return old; }                                      \
  template <class T> inline T atomic_fetch_min_explicit(AS atomic<T>* a, T v, memory_order) {          \
    T old = a->value; a->value = old < v ? old : v; return old; }                                      \
  template <class T> inline T atomic_exchange_explicit(AS atomic<T>* a, T v, memory_order) {           \
    T old = a->value; a->value = v; return old; }                                                      \
  template <class T> inline bool atomic_compare_exchange_weak_explicit(AS atomic<T>* a, thread T* expected, \
                                                                       T desired, memory_order, memory_order) { \
    if (a->value == *expected) { a->value = desired; return true; }                                    \
    *expected = a->value; return false; }
#ifdef MSLEMU_STRICT
MSLEMU_ATOMIC_OPS(device)
MSLEMU_ATOMIC_OPS(threadgroup)
#else
MSLEMU_ATOMIC_OPS()
#endif
#undef MSLEMU_ATOMIC_OPS

}  // namespace metal

#include "msl_sync.h"

// Kernel-facing barriers, simd-group functions and threadgroup variables. Each one hands
// control to the emulator's scheduler (runner.h), which runs the threadgroup's threads as
// fibers; __builtin_LINE() names the call site so mismatched barriers can be reported.
#pragma once

namespace mslemu {
constexpr int kSimdWidth = 32;
constexpr int kSlotBytes = 16;  // one lane's value in a simd exchange (up to float4)

// Provided by runner.h.
inline void barrier(int line);
// Publishes this lane's bytes and waits for every active lane of the simd-group; returns the
// lanes' slots (kSlotBytes apart) and sets *mask to the lanes that took part.
inline const unsigned char* simd_exchange(const void* value, unsigned bytes, int line, uint32_t* mask);
inline unsigned simd_lane();
// Threadgroup variable `slot` of this threadgroup (allocated and poisoned on first use).
inline void* threadgroup_alloc(int slot, size_t bytes, size_t align);
[[noreturn]] inline void fail(const char* fmt, ...);

template <class T> inline T slot_value(const unsigned char* slots, unsigned lane) {
  T t;
  memcpy(&t, slots + lane * kSlotBytes, sizeof t);
  return t;
}
template <class T> inline T& threadgroup_var(int slot) {
  return *static_cast<T*>(threadgroup_alloc(slot, sizeof(T), alignof(T)));
}
}  // namespace mslemu

namespace metal {

inline void threadgroup_barrier(mem_flags, int line = __builtin_LINE()) { mslemu::barrier(line); }
inline void simdgroup_barrier(mem_flags, int line = __builtin_LINE()) {
  uint32_t mask;
  char none = 0;
  mslemu::simd_exchange(&none, 1, line, &mask);
}

#define MSLEMU_SIMD_FOLD(name, init, op)                                            \
  template <class T> inline T name(T x, int line = __builtin_LINE()) {             \
    static_assert(sizeof(T) <= mslemu::kSlotBytes, #name ": value too large");      \
    uint32_t mask;                                                                  \
    const unsigned char* s = mslemu::simd_exchange(&x, sizeof x, line, &mask);      \
    bool first = true;                                                              \
    T r = init;                                                                     \
    for (unsigned l = 0; l < (unsigned)mslemu::kSimdWidth; ++l) {                   \
      if (!(mask >> l & 1u)) continue;                                              \
      T v = mslemu::slot_value<T>(s, l);                                            \
      r = first ? v : (op);                                                         \
      first = false;                                                                \
    }                                                                               \
    return r;                                                                       \
  }
MSLEMU_SIMD_FOLD(simd_sum, T(0), r + v)
MSLEMU_SIMD_FOLD(simd_product, T(1), r * v)
MSLEMU_SIMD_FOLD(simd_max, T(0), max(r, v))
MSLEMU_SIMD_FOLD(simd_min, T(0), min(r, v))
#undef MSLEMU_SIMD_FOLD

// Reads lane `src`'s value; an inactive or missing source lane gives poison bytes (NaN for floats).
template <class T> inline T simd_read(T x, unsigned src, int line) {
  uint32_t mask;
  const unsigned char* s = mslemu::simd_exchange(&x, sizeof x, line, &mask);
  if (src < (unsigned)mslemu::kSimdWidth && (mask >> src & 1u)) return mslemu::slot_value<T>(s, src);
  T poison;
  memset(&poison, 0xFF, sizeof poison);
  return poison;
}
template <class T> inline T simd_shuffle(T x, ushort lane, int line = __builtin_LINE()) { return simd_read(x, lane, line); }
template <class T> inline T simd_broadcast(T x, ushort lane, int line = __builtin_LINE()) { return simd_read(x, lane, line); }
template <class T> inline T simd_shuffle_xor(T x, ushort m, int line = __builtin_LINE()) {
  return simd_read(x, mslemu::simd_lane() ^ m, line);
}
// The upper `delta` lanes keep their own value, as in MSL.
template <class T> inline T simd_shuffle_down(T x, ushort delta, int line = __builtin_LINE()) {
  unsigned src = mslemu::simd_lane() + delta;
  T r = simd_read(x, src, line);
  return src < (unsigned)mslemu::kSimdWidth ? r : x;
}
template <class T> inline T simd_shuffle_up(T x, ushort delta, int line = __builtin_LINE()) {
  unsigned lane = mslemu::simd_lane();
  T r = simd_read(x, lane - delta, line);
  return lane >= delta ? r : x;
}
inline bool simd_is_first(int line = __builtin_LINE()) {
  uint32_t mask;
  char none = 0;
  mslemu::simd_exchange(&none, 1, line, &mask);
  return (mask & ((1u << mslemu::simd_lane()) - 1u)) == 0;
}

}  // namespace metal

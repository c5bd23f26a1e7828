// Runs a kernel's threadgroups one after another; the threads of a threadgroup are
// cooperative fibers (ucontext) that run until they reach a barrier, a simd-group function or
// the end. The scheduler releases a barrier only when every thread waits at the same one, and
// reports (instead of hanging) a barrier that some thread skipped, returned before, or reached
// at another call site.
#pragma once
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <string>
#include <vector>

namespace mslemu {

using metal::uint3;

struct ThreadIds {
  uint3 pos_grid, tg_pos, tid, tg_size, grid_size, n_tgs;
  uint32_t tid_flat, lane, simd_id, n_simds;
};
typedef void (*Entry)(void** buffers, const ThreadIds& t);
// Buffer index a kernel reads; bytes > 0 for `constant T&` arguments (must equal sizeof(T)).
struct BufferUse { int index; size_t bytes; };

constexpr size_t kThreadgroupBytes = 32768;
constexpr unsigned kMaxThreads = 1024;
constexpr unsigned char kPoison[2] = {0xC0, 0x7F};  // 0x7FC0 (half NaN); pairs make float NaN 0x7FC07FC0

enum class State { Ready, AtBarrier, AtSimd, Done };

struct Fiber {
  ucontext_t ctx;
  State state = State::Ready;
  int line = 0;            // call site of the barrier / simd function it waits at
  uint32_t barriers = 0;   // barriers passed, so loop iterations are told apart
  uint32_t simd_ops = 0;   // simd functions passed
  ThreadIds ids;
};

struct SimdGroup {
  unsigned char slots[2][kSimdWidth * kSlotBytes];
  uint32_t mask[2];
};

struct Runtime {
  std::vector<Fiber> fibers;
  std::vector<SimdGroup> simds;
  unsigned char* stacks = nullptr;
  size_t stack_bytes = 0, stack_count = 0;
  ucontext_t scheduler;
  int current = -1;
  Entry entry = nullptr;
  void** buffers = nullptr;
  alignas(64) unsigned char arena[kThreadgroupBytes];
  size_t arena_used = 0;
  std::vector<std::pair<int, size_t>> vars;  // (slot, offset) of this threadgroup's variables
  const uint32_t* tg_lengths = nullptr;  // bytes of each [[threadgroup(i)]] argument
  std::string error;
};

inline Runtime& rt() {
  static Runtime r;
  return r;
}

inline void yield_to_scheduler() {
  Runtime& r = rt();
  swapcontext(&r.fibers[r.current].ctx, &r.scheduler);
}

inline void vreport(const char* fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  if (rt().error.empty()) rt().error = buf;
}
// Records an error found by the scheduler; returns false so release() can `return report(...)`.
inline bool report(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(fmt, ap);
  va_end(ap);
  return false;
}

// An error inside a kernel thread: record it and leave the fiber for good.
[[noreturn]] inline void fail(const char* fmt, ...) {
  Runtime& r = rt();
  va_list ap;
  va_start(ap, fmt);
  vreport(fmt, ap);
  va_end(ap);
  if (r.current >= 0) {
    r.fibers[r.current].state = State::Done;
    setcontext(&r.scheduler);  // this fiber is abandoned; the dispatch stops
  }
  __builtin_trap();
}

inline void barrier(int line) {
  Runtime& r = rt();
  Fiber& f = r.fibers[r.current];
  f.state = State::AtBarrier;
  f.line = line;
  yield_to_scheduler();
  ++f.barriers;
}

inline unsigned simd_lane() { Runtime& r = rt(); return r.fibers[r.current].ids.lane; }

inline const unsigned char* simd_exchange(const void* value, unsigned bytes, int line, uint32_t* mask) {
  Runtime& r = rt();
  Fiber& f = r.fibers[r.current];
  SimdGroup& g = r.simds[f.ids.simd_id];
  unsigned parity = f.simd_ops & 1u;
  memcpy(g.slots[parity] + f.ids.lane * kSlotBytes, value, bytes);
  f.state = State::AtSimd;
  f.line = line;
  yield_to_scheduler();
  ++f.simd_ops;
  *mask = g.mask[parity];
  return g.slots[parity];
}

inline void* threadgroup_alloc(int slot, size_t bytes, size_t align) {
  Runtime& r = rt();
  for (auto& v : r.vars)
    if (v.first == slot) return r.arena + v.second;
  size_t off = (r.arena_used + align - 1) / align * align;
  if (off + bytes > kThreadgroupBytes)
    fail("threadgroup memory exceeds %zu bytes: %zu needed", kThreadgroupBytes, off + bytes);
  r.arena_used = off + bytes;
  r.vars.push_back({slot, off});
  return r.arena + off;
}

// A `threadgroup T* p [[threadgroup(i)]]` argument: memory the host sized for this dispatch.
inline void* threadgroup_param(int i) { return threadgroup_alloc(-1 - i, rt().tg_lengths[i], 16); }

inline void fiber_main() {
  Runtime& r = rt();
  Fiber& f = r.fibers[r.current];
  r.entry(r.buffers, f.ids);
  f.state = State::Done;
  setcontext(&r.scheduler);
}

inline const char* state_name(State s) {
  return s == State::AtBarrier ? "threadgroup_barrier" : s == State::AtSimd ? "a simd-group function" : "the end";
}

// All fibers are blocked: release a simd-group or the barrier, or explain why neither can go on.
inline bool release(Runtime& r, unsigned group) {
  std::vector<Fiber>& fs = r.fibers;
  bool released = false;
  for (size_t s = 0; s < r.simds.size(); ++s) {
    size_t lo = s * kSimdWidth, hi = std::min(fs.size(), lo + kSimdWidth);
    uint32_t mask = 0;
    bool all = true;
    int first = -1;
    for (size_t i = lo; i < hi; ++i) {
      if (fs[i].state == State::Done) continue;
      if (fs[i].state != State::AtSimd) { all = false; break; }
      if (first < 0) first = (int)i;
      if (fs[i].line != fs[first].line || fs[i].simd_ops != fs[first].simd_ops)
        return report("threadgroup %u: simd-group %zu: lane %zu waits at the simd function on line %d, lane %d at line %d "
             "(simd function in divergent control flow)", group, s, i - lo, fs[i].line, first - (int)lo, fs[first].line);
      mask |= 1u << (i - lo);
    }
    if (!all || !mask) continue;
    r.simds[s].mask[fs[first].simd_ops & 1u] = mask;
    for (size_t i = lo; i < hi; ++i)
      if (fs[i].state == State::AtSimd) fs[i].state = State::Ready;
    released = true;
  }
  if (released) return true;
  int waiting = -1, other = -1;
  for (size_t i = 0; i < fs.size(); ++i) {
    if (fs[i].state == State::AtBarrier && waiting < 0) waiting = (int)i;
    if (fs[i].state != State::AtBarrier && other < 0) other = (int)i;
  }
  if (waiting < 0) return false;  // everyone is done
  const Fiber& w = fs[waiting];
  if (other >= 0) {
    const Fiber& o = fs[other];
    if (o.state == State::Done)
      return report("threadgroup %u: threadgroup_barrier on line %d not reached by all threads: thread %d returned "
           "while thread %d waits (barrier after an early return or in divergent control flow)",
           group, w.line, other, waiting);
    return report("threadgroup %u: deadlock: thread %d waits at %s on line %d, thread %d at threadgroup_barrier on line %d",
         group, other, state_name(o.state), o.line, waiting, w.line);
  }
  for (size_t i = 0; i < fs.size(); ++i)
    if (fs[i].line != w.line || fs[i].barriers != w.barriers)
      return report("threadgroup %u: threads wait at different barriers: thread %zu on line %d (barrier #%u), thread %d on "
           "line %d (barrier #%u) (barrier in divergent control flow)", group, i, fs[i].line, fs[i].barriers + 1,
           waiting, w.line, w.barriers + 1);
  for (Fiber& f : fs) f.state = State::Ready;
  return true;
}

inline void ensure_stacks(Runtime& r, size_t n) {
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
  const size_t bytes = 512 << 10;
#else
  const size_t bytes = 128 << 10;
#endif
  if (r.stack_count >= n) return;
  if (r.stacks) munmap(r.stacks, r.stack_bytes * r.stack_count);
  void* p = mmap(nullptr, bytes * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    r.stacks = nullptr;
    r.stack_count = 0;
    report("cannot map %zu fiber stacks", n);
    return;
  }
  r.stacks = (unsigned char*)p;
  r.stack_bytes = bytes;
  r.stack_count = n;
}

// dims: threadgroups per grid (3), threads per threadgroup (3). tg_lengths: bytes of the
// kernel's `threadgroup T* [[threadgroup(i)]]` arguments. schedule 0 runs threads in order,
// 1 in reverse (a kernel whose result depends on it has a race).
inline void run_threadgroup(Runtime& r, const uint3& tgp, const uint3& ntg, const uint3& tgs, unsigned group,
                            int schedule) {
  const unsigned n = tgs.x * tgs.y * tgs.z;
  r.arena_used = 0;
  r.vars.clear();
  for (size_t i = 0; i < kThreadgroupBytes; ++i) r.arena[i] = kPoison[i & 1];
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = r.fibers[i];
    f.state = State::Ready;
    f.line = 0;
    f.barriers = f.simd_ops = 0;
    uint3 tid = {i % tgs.x, i / tgs.x % tgs.y, i / (tgs.x * tgs.y)};
    f.ids = ThreadIds{tgp * tgs + tid, tgp, tid, tgs, ntg * tgs, ntg, i, i % kSimdWidth, i / kSimdWidth,
                      (n + kSimdWidth - 1) / kSimdWidth};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = r.stacks + (size_t)i * r.stack_bytes;
    f.ctx.uc_stack.ss_size = r.stack_bytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
  }
  while (r.error.empty()) {
    for (unsigned k = 0; k < n && r.error.empty(); ++k) {
      unsigned i = schedule == 1 ? n - 1 - k : k;
      while (r.fibers[i].state == State::Ready && r.error.empty()) {
        r.current = (int)i;
        swapcontext(&r.scheduler, &r.fibers[i].ctx);
        r.current = -1;
      }
    }
    if (!r.error.empty() || !release(r, group)) break;
  }
}

inline int dispatch(Entry entry, const BufferUse* uses, void** buffers, const uint64_t* sizes, int nbuf,
                    const uint32_t* dims, const uint32_t* tg_lengths, int schedule, char* err, int errlen) {
  Runtime& r = rt();
  r.error.clear();
  r.current = -1;
  uint3 ntg = {dims[0], dims[1], dims[2]}, tgs = {dims[3], dims[4], dims[5]};
  const unsigned n = tgs.x * tgs.y * tgs.z;
  if (n == 0 || n > kMaxThreads) {
    snprintf(err, errlen, "threads per threadgroup %ux%ux%u = %u outside [1, %u]", tgs.x, tgs.y, tgs.z, n, kMaxThreads);
    return 1;
  }
  for (const BufferUse* u = uses; u->index >= 0; ++u) {
    if (u->index >= nbuf || !buffers[u->index]) {
      snprintf(err, errlen, "buffer(%d) is not bound", u->index);
      return 1;
    }
    if (u->bytes && sizes[u->index] != u->bytes) {
      snprintf(err, errlen, "buffer(%d): %llu bytes bound, the kernel's constant argument has %zu", u->index,
               (unsigned long long)sizes[u->index], u->bytes);
      return 1;
    }
  }
  r.fibers.resize(n);
  r.simds.resize((n + kSimdWidth - 1) / kSimdWidth);
  ensure_stacks(r, n);
  if (!r.error.empty()) return snprintf(err, errlen, "%s", r.error.c_str()), 1;
  r.entry = entry;
  r.buffers = buffers;
  r.tg_lengths = tg_lengths;
  unsigned group = 0;
  for (uint32_t z = 0; z < ntg.z && r.error.empty(); ++z)
    for (uint32_t y = 0; y < ntg.y && r.error.empty(); ++y)
      for (uint32_t x = 0; x < ntg.x && r.error.empty(); ++x, ++group) {
        uint3 tgp = {x, y, z};
        run_threadgroup(r, tgp, ntg, tgs, group, schedule);
      }
  if (r.error.empty()) return 0;
  snprintf(err, errlen, "%s", r.error.c_str());
  return 1;
}

// Converts a builtin (uint3) to the kernel argument's declared type (uint, uint2, ushort3, ...).
template <class T> inline T builtin(uint3 v) {
  if constexpr (metal::detail::vec_info<T>::n == 1) return (T)v.x;
  else if constexpr (metal::detail::vec_info<T>::n == 2) return metal::detail::make<T>(v.x, v.y);
  else return metal::detail::make<T>(v.x, v.y, v.z);
}
template <class T> struct strip_ref { typedef T type; };
template <class T> struct strip_ref<T&> { typedef T type; };

}  // namespace mslemu

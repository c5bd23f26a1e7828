// A minimal blocks runtime (clang -fblocks on Linux), written from the published block ABI:
// what metal-cpp's completion handlers need. metal-cpp wraps a std::function in a stack block
// holding a `__block` copy of it; the fake command buffer _Block_copy's it to the heap (as
// Metal does), calls it when the work completes, and _Block_release's it.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "runtime.h"

namespace {

enum : int {
  kRefcountMask = 0xfffe,   // the count, in units of 2
  kNeedsFree = 1 << 24,     // on the heap
  kHasCopyDispose = 1 << 25,
  kIsGlobal = 1 << 28,
};

enum : int {  // _Block_object_assign / _Block_object_dispose field kinds
  kFieldIsObject = 3,
  kFieldIsBlock = 7,
  kFieldIsByref = 8,
  kFieldIsWeak = 16,
  kByrefCaller = 128,
};

struct Descriptor {
  unsigned long reserved;
  unsigned long size;
  void (*copy)(void* dst, const void* src);  // present with kHasCopyDispose
  void (*dispose)(const void*);
};

struct Layout {
  void* isa;
  std::atomic<int> flags;
  int reserved;
  void (*invoke)(void*, ...);
  Descriptor* descriptor;
};

// A `__block` variable's box.
struct Byref {
  void* isa;
  Byref* forwarding;
  std::atomic<int> flags;
  int size;
  void (*keep)(Byref* dst, Byref* src);  // present with kHasCopyDispose
  void (*destroy)(Byref*);
};

// Adds one reference unless the count saturated; returns the new flags.
void add_ref(std::atomic<int>& flags) {
  int old = flags.load();
  while ((old & kRefcountMask) != kRefcountMask && !flags.compare_exchange_weak(old, old + 2)) {
  }
}

// Drops one reference; true when it was the last.
bool drop_ref(std::atomic<int>& flags) {
  int old = flags.load();
  for (;;) {
    if ((old & kRefcountMask) == kRefcountMask) return false;  // saturated: immortal
    if ((old & kRefcountMask) == 0) fakert::validation_error("block or __block variable released too often");
    if (flags.compare_exchange_weak(old, old - 2)) return (old & kRefcountMask) == 2;
  }
}

void* copy_byref(Byref* src) {
  Byref* live = src->forwarding;
  if (live->flags.load() & kNeedsFree) {  // already on the heap
    add_ref(live->flags);
    return live;
  }
  auto* copy = static_cast<Byref*>(malloc(src->size));
  copy->isa = nullptr;
  // Two references: the stack frame's (dropped when the variable goes out of scope) and the block's.
  copy->flags.store((src->flags.load() & ~kRefcountMask) | kNeedsFree | 4);
  copy->forwarding = copy;
  src->forwarding = copy;
  copy->size = src->size;
  if (src->flags.load() & kHasCopyDispose) {
    copy->keep = src->keep;
    copy->destroy = src->destroy;
    src->keep(copy, src);  // copy-constructs the variable (a C++ object) into the heap box
  } else {
    memmove(reinterpret_cast<char*>(copy) + offsetof(Byref, keep), reinterpret_cast<char*>(src) + offsetof(Byref, keep),
            src->size - offsetof(Byref, keep));
  }
  return copy;
}

void release_byref(Byref* b) {
  b = b->forwarding;
  if (!(b->flags.load() & kNeedsFree)) return;  // never copied: lives on its stack frame
  if (!drop_ref(b->flags)) return;
  if (b->flags.load() & kHasCopyDispose) b->destroy(b);
  free(b);
}

}  // namespace

extern "C" {

void* _NSConcreteStackBlock[32];
void* _NSConcreteGlobalBlock[32];
void* _NSConcreteMallocBlock[32];

void* _Block_copy(const void* arg) {
  if (!arg) return nullptr;
  auto* block = const_cast<Layout*>(static_cast<const Layout*>(arg));
  int flags = block->flags.load();
  if (flags & kNeedsFree) {
    add_ref(block->flags);
    return block;
  }
  if (flags & kIsGlobal) return block;
  auto* copy = static_cast<Layout*>(malloc(block->descriptor->size));
  memmove(static_cast<void*>(copy), block, block->descriptor->size);
  copy->flags.store((flags & ~kRefcountMask) | kNeedsFree | 2);  // one reference: the caller's
  copy->isa = _NSConcreteMallocBlock;
  if (flags & kHasCopyDispose) block->descriptor->copy(copy, block);
  return copy;
}

void _Block_release(const void* arg) {
  if (!arg) return;
  auto* block = const_cast<Layout*>(static_cast<const Layout*>(arg));
  int flags = block->flags.load();
  if ((flags & kIsGlobal) || !(flags & kNeedsFree)) return;
  if (!drop_ref(block->flags)) return;
  if (flags & kHasCopyDispose) block->descriptor->dispose(block);
  free(block);
}

// Called by the compiler's copy helpers for each captured block, object or __block variable.
void _Block_object_assign(void* dest, const void* object, const int flags) {
  void** slot = static_cast<void**>(dest);
  if (flags & kByrefCaller) {  // from a __block variable's own copy helper
    *slot = (flags & kFieldIsBlock) == kFieldIsBlock ? _Block_copy(object) : const_cast<void*>(object);
    return;
  }
  switch (flags & (kFieldIsByref | kFieldIsBlock | kFieldIsObject)) {
    case kFieldIsByref:
      *slot = copy_byref(static_cast<Byref*>(const_cast<void*>(object)));
      return;
    case kFieldIsBlock:
      *slot = _Block_copy(object);
      return;
    default:  // Objective-C objects: there are none in C++ blocks
      *slot = const_cast<void*>(object);
      return;
  }
}

void _Block_object_dispose(const void* object, const int flags) {
  if (flags & kByrefCaller) {
    if ((flags & kFieldIsBlock) == kFieldIsBlock) _Block_release(object);
    return;
  }
  switch (flags & (kFieldIsByref | kFieldIsBlock | kFieldIsObject)) {
    case kFieldIsByref:
      release_byref(static_cast<Byref*>(const_cast<void*>(object)));
      return;
    case kFieldIsBlock:
      _Block_release(object);
      return;
    default:
      return;
  }
}

}  // extern "C"

namespace fakert {
// Calls a copied `void (^)(void* arg)` block.
void call_block(void* block, void* arg) {
  auto* b = static_cast<Layout*>(block);
  reinterpret_cast<void (*)(void*, void*)>(b->invoke)(b, arg);
}
}  // namespace fakert

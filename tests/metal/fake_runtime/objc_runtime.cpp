// The fake Objective-C runtime: selectors, classes, method lookup for objc_msgSend,
// reference counting with zombies, autorelease pools. See runtime.h.
#include "runtime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace fakert {

namespace {

struct Registry {
  std::mutex mutex;
  Class root = nullptr;  // NSObject
  std::unordered_map<std::string, SEL> selectors;    // interned: SEL is the name's address
  std::unordered_map<std::string, Class> classes;
  std::unordered_map<std::string, void*> protocols;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: messages may arrive during exit
  return *r;
}

Class new_class_locked(const char* name, Class super) {
  Registry& r = registry();
  auto it = r.classes.find(name);
  if (it != r.classes.end()) return it->second;
  const char* stored = strdup(name);
  Class meta = new objc_class{nullptr, kClassMagic, super ? super->isa : nullptr, stored, true, {}, nullptr};
  Class cls = new objc_class{meta, kClassMagic, super, stored, false, {}, super ? super->make : nullptr};
  r.classes.emplace(name, cls);
  if (!super && !r.root) r.root = cls;
  return cls;
}

void ensure_registered();

}  // namespace

void vmessage(const char* kind, const char* fmt, va_list ap) {
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, ap);
  fprintf(stderr, "fake Metal runtime: %s: %s\n", kind, buf);
  fflush(stderr);
}

void validation_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("validation error", fmt, ap);
  va_end(ap);
  abort();
}

void warning(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("warning", fmt, ap);
  va_end(ap);
}

Class define_class(const char* name, Class super) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  return new_class_locked(name, super);
}

Class class_named(const char* name) {
  ensure_registered();
  std::lock_guard<std::mutex> lock(registry().mutex);
  Registry& r = registry();
  auto it = r.classes.find(name);
  if (it != r.classes.end()) return it->second;
  // Real Metal has ~100 more classes than we fake: they exist, answer NSObject's methods,
  // and anything else is an "unrecognized selector" naming them.
  return new_class_locked(name, r.root);
}

void add_method(Class cls, const char* selector, void* imp) { cls->methods[sel_registerName(selector)] = imp; }

void add_class_method(Class cls, const char* selector, void* imp) {
  cls->isa->methods[sel_registerName(selector)] = imp;
}

void* find_method(Class cls, SEL sel) {
  for (Class c = cls; c; c = c->super) {
    auto it = c->methods.find(sel);
    if (it != c->methods.end()) return it->second;
  }
  if (cls && cls->meta && registry().root) {
    // Class objects also answer the root class's instance methods (retain, respondsToSelector:...).
    return find_method(registry().root, sel);
  }
  return nullptr;
}

bool is_live(const void* p) {
  if (!p) return false;
  const auto* o = static_cast<const Object*>(p);
  const auto* c = static_cast<const objc_class*>(p);
  return o->magic == kLiveMagic || c->magic == kClassMagic;
}

const char* class_name_of(const void* obj) {
  if (!obj) return "nil";
  Class c = static_cast<const objc_object*>(obj)->isa;
  return c && c->magic == kClassMagic ? c->name : "?";
}

Object* retain(Object* o) {
  o->refs.fetch_add(1, std::memory_order_relaxed);
  return o;
}

void release(Object* o) {
  long before = o->refs.fetch_sub(1, std::memory_order_acq_rel);
  if (before > 1) return;
  if (before < 1) validation_error("-[%s release]: over-release of %p", class_name_of(o), (void*)o);
  // Dealloc: the C++ part goes, the header stays as a zombie that reports later messages.
  Class cls = o->isa;
  if (o->destroy) o->destroy(o);
  o->magic = kDeadMagic;
  cls->live.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
// Per thread, a stack of pools; each pool is the objects autoreleased into it.
thread_local std::vector<std::vector<Object*>> t_pools;

struct PoolObject : Object {
  size_t level = 0;
  const void* thread = nullptr;
};
thread_local int t_thread_marker;

void drain_to(size_t level) {
  while (t_pools.size() > level) {
    std::vector<Object*> objects = std::move(t_pools.back());
    t_pools.pop_back();
    for (Object* o : objects) release(o);
  }
}
}  // namespace

void push_pool() { t_pools.emplace_back(); }

void pop_pool() { drain_to(t_pools.empty() ? 0 : t_pools.size() - 1); }

std::atomic<long> g_autoreleased_without_pool{0};

Object* autorelease(Object* o) {
  if (t_pools.empty()) {
    // Apple's runtime parks these in the thread's implicit pool, drained only when the thread
    // exits: a leak on a long-lived thread. Counted, so tests can require none.
    if (g_autoreleased_without_pool.fetch_add(1) == 0)
      warning("%s %p autoreleased with no NSAutoreleasePool in place (leaks until the thread exits)",
              class_name_of(o), (void*)o);
    return o;
  }
  t_pools.back().push_back(o);
  return o;
}

namespace {

// ---- NSObject ---------------------------------------------------------------------------
void* obj_alloc(Class cls, SEL) {
  if (!cls->make) validation_error("+[%s alloc]: the fake runtime cannot instantiate this class", cls->name);
  return cls->make(cls);
}
void* obj_init(Object* self, SEL) { return self; }
// Class objects are never deallocated: their retain/release/autorelease do nothing.
void* obj_retain(Object* self, SEL) { return self->magic == kClassMagic ? self : retain(self); }
void obj_release(Object* self, SEL) {
  if (self->magic != kClassMagic) release(self);
}
void* obj_autorelease(Object* self, SEL) { return self->magic == kClassMagic ? self : autorelease(self); }
unsigned long obj_retainCount(Object* self, SEL) { return (unsigned long)self->refs.load(); }
bool obj_respondsToSelector(objc_object* self, SEL, SEL query) { return find_method(self->isa, query) != nullptr; }
void* obj_methodSignatureForSelector(objc_object* self, SEL, SEL query) {
  // Non-nil means "responds"; nothing in metal-cpp looks inside it.
  return find_method(self->isa, query) ? (void*)self->isa : nullptr;
}
void* obj_description(objc_object* self, SEL) {
  char buf[128];
  snprintf(buf, sizeof buf, "<%s: %p>", class_name_of(self), (void*)self);
  return autorelease(new_string(buf));
}
unsigned long obj_hash(objc_object* self, SEL) { return (unsigned long)(uintptr_t)self; }
bool obj_isEqual(objc_object* self, SEL, objc_object* other) { return self == other; }
void* obj_class(objc_object* self, SEL) { return self->isa; }
bool obj_isKindOfClass(objc_object* self, SEL, Class cls) {
  for (Class c = self->isa; c; c = c->super)
    if (c == cls) return true;
  return false;
}
void* obj_copy(Object* self, SEL) { return retain(self); }  // our fakes are immutable where copied

// ---- NSAutoreleasePool --------------------------------------------------------------------
void* pool_alloc(Class cls, SEL) {
  PoolObject* p = make<PoolObject>(cls);
  return p;
}
void* pool_init(PoolObject* self, SEL) {
  t_pools.emplace_back();
  self->level = t_pools.size();
  self->thread = &t_thread_marker;
  return self;
}
void pool_drain(PoolObject* self, SEL) {
  if (self->thread != &t_thread_marker)
    validation_error("NSAutoreleasePool %p drained on another thread than the one that created it", (void*)self);
  if (self->level == 0 || self->level > t_pools.size())
    validation_error("NSAutoreleasePool %p released twice or out of order", (void*)self);
  drain_to(self->level - 1);  // inner pools not yet released drain with it, as in Foundation
  self->level = 0;
  release(self);
}
void pool_addObject(Class, SEL, Object* o) { autorelease(o); }

void register_runtime_classes() {
  Class root = define_class("NSObject", nullptr);
  root->make = make_erased<Object>;
  add_class_method(root, "alloc", (void*)obj_alloc);
  add_method(root, "init", (void*)obj_init);
  add_method(root, "retain", (void*)obj_retain);
  add_method(root, "release", (void*)obj_release);
  add_method(root, "autorelease", (void*)obj_autorelease);
  add_method(root, "retainCount", (void*)obj_retainCount);
  add_method(root, "respondsToSelector:", (void*)obj_respondsToSelector);
  add_method(root, "methodSignatureForSelector:", (void*)obj_methodSignatureForSelector);
  add_method(root, "description", (void*)obj_description);
  add_method(root, "debugDescription", (void*)obj_description);
  add_method(root, "hash", (void*)obj_hash);
  add_method(root, "isEqual:", (void*)obj_isEqual);
  add_method(root, "class", (void*)obj_class);
  add_method(root, "isKindOfClass:", (void*)obj_isKindOfClass);
  add_method(root, "copy", (void*)obj_copy);

  Class pool = define_class("NSAutoreleasePool", root);
  add_class_method(pool, "alloc", (void*)pool_alloc);
  add_class_method(pool, "addObject:", (void*)pool_addObject);
  add_method(pool, "init", (void*)pool_init);
  add_method(pool, "drain", (void*)pool_drain);
  add_method(pool, "release", (void*)pool_drain);
  add_method(pool, "retain", (void*)+[](Object* self, SEL) -> void* {
    validation_error("-[NSAutoreleasePool retain]: pools cannot be retained (%p)", (void*)self);
  });
  add_method(pool, "autorelease", (void*)+[](Object* self, SEL) -> void* {
    validation_error("-[NSAutoreleasePool autorelease]: pools cannot be autoreleased (%p)", (void*)self);
  });
}

void ensure_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_runtime_classes();
    register_foundation();
    register_metal();
  });
}

}  // namespace

}  // namespace fakert

using namespace fakert;

extern "C" {

// Called by the objc_msgSend trampolines with a non-nil receiver.
void* fakert_lookup(const void* receiver, SEL sel) {
  ensure_registered();
  const auto* o = static_cast<const Object*>(receiver);
  const auto* c = static_cast<const objc_class*>(receiver);
  if (c->magic == kClassMagic) {
    if (void* imp = find_method(c->isa, sel)) return imp;
    validation_error("+[%s %s]: unrecognized selector sent to class (not implemented by the fake runtime)",
                     c->name, (const char*)sel);
  }
  if (o->magic == kDeadMagic)
    validation_error("-[%s %s]: message sent to deallocated instance %p (use after release)", class_name_of(o),
                     (const char*)sel, receiver);
  if (o->magic != kLiveMagic)
    validation_error("message %s sent to %p, which is not an Objective-C object", (const char*)sel, receiver);
  if (void* imp = find_method(o->isa, sel)) return imp;
  validation_error("-[%s %s]: unrecognized selector sent to instance %p (not implemented by the fake runtime)",
                   class_name_of(o), (const char*)sel, receiver);
}

SEL sel_registerName(const char* name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.selectors.find(name);
  if (it != r.selectors.end()) return it->second;
  SEL sel = reinterpret_cast<SEL>(strdup(name));
  r.selectors.emplace(name, sel);
  return sel;
}

const char* sel_getName(SEL sel) { return reinterpret_cast<const char*>(sel); }

id objc_lookUpClass(const char* name) { return reinterpret_cast<id>(class_named(name)); }

Class objc_getClass(const char* name) { return class_named(name); }

Protocol* objc_getProtocol(const char* name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.protocols.find(name);
  if (it != r.protocols.end()) return static_cast<Protocol*>(it->second);
  void* p = new objc_object{nullptr};  // opaque: never messaged by metal-cpp
  r.protocols.emplace(name, p);
  return static_cast<Protocol*>(p);
}

// For the tests: live instances of the class named `name` (a leak check).
long fakert_live_objects(const char* name) { return class_named(name)->live.load(); }

// For the tests: objects autoreleased while no pool was in place.
long fakert_autoreleased_without_pool() { return g_autoreleased_without_pool.load(); }

Class object_getClass(id obj) { return obj ? obj->isa : nullptr; }

BOOL class_respondsToSelector(Class cls, SEL sel) { return cls && find_method(cls, sel) ? YES : NO; }

}  // extern "C"

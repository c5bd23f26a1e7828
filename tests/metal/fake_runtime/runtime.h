// The fake Objective-C runtime behind the fake Metal classes (Linux tests only).
//
// Objects and classes are laid out as the real runtime's are where the caller can tell:
// an object starts with its `isa` (its class), a class with its own `isa` (its metaclass),
// so objc_msgSend (objc_msgsend_x86_64.S) finds an implementation from the receiver alone
// and tail-jumps to it with the caller's argument registers and stack untouched. Methods
// are plain C++ functions with the signature the caller used: `R imp(Self*, SEL, Args...)`.
//
// Everything a real Mac would reject (Metal API validation) is a fatal error here too:
// `validation_error` prints the reason and aborts, as MTL_DEBUG_LAYER does.
#pragma once
#include <objc/runtime.h>

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

struct objc_class {
  Class isa;              // the metaclass (for a metaclass: nullptr)
  uint32_t magic;         // fakert::kClassMagic
  Class super;            // nullptr for the root
  const char* name;
  bool meta;
  std::unordered_map<SEL, void*> methods;
  void* (*make)(Class);   // allocates an instance (inherited); see fakert::make
  std::atomic<long> live{0};  // instances not yet deallocated (leak checks)
};

namespace fakert {

constexpr uint32_t kLiveMagic = 0x4C495645;   // "LIVE"
constexpr uint32_t kDeadMagic = 0x44454144;   // "DEAD": a zombie (deallocated, kept to catch use)
constexpr uint32_t kClassMagic = 0x434C5353;  // "CLSS"

// Every fake object. The C++ type behind an object is T : Object; instances are never
// freed: dealloc runs ~T() and leaves a zombie header that reports any later message.
struct Object : objc_object {
  uint32_t magic = kLiveMagic;
  std::atomic<long> refs{1};
  void (*destroy)(Object*) = nullptr;  // ~T()
};

[[noreturn]] void validation_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warning(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Classes and methods.
Class define_class(const char* name, Class super);  // idempotent by name
Class class_named(const char* name);               // defines an empty NSObject subclass if unknown
void add_method(Class cls, const char* selector, void* imp);
void add_class_method(Class cls, const char* selector, void* imp);
void* find_method(Class cls, SEL sel);              // walks super; nullptr if none
const char* class_name_of(const void* obj);

// A new instance of T with class `cls` and one reference (the caller's, as +alloc gives).
template <class T>
T* make(Class cls) {
  T* o = new T();
  o->isa = cls;
  cls->live.fetch_add(1, std::memory_order_relaxed);
  o->destroy = [](Object* p) { static_cast<T*>(p)->~T(); };
  return o;
}
template <class T>
void* make_erased(Class cls) { return make<T>(cls); }

// Reference counting and autorelease pools (the NSObject methods call these).
Object* retain(Object* o);
void release(Object* o);
Object* autorelease(Object* o);
// An autorelease pool around code the runtime itself calls (completion handlers), as
// Metal's dispatch queues have one.
void push_pool();
void pop_pool();
bool is_live(const void* p);
// The object `p` as T, or a validation error naming `what` if it is not a live fake object.
template <class T>
T* checked(const void* p, const char* what) {
  if (!is_live(p)) validation_error("%s: %p is not a live object", what, p);
  return static_cast<T*>(const_cast<Object*>(static_cast<const Object*>(p)));
}

// Calls a heap block of type `void (^)(T*)` (see blocks.cpp).
void call_block(void* block, void* arg);

// Registration of the Foundation and Metal classes (called once, from the first lookup).
void register_foundation();
void register_metal();

// Foundation objects the Metal fakes hand out.
struct String : Object {
  std::string text;
};
String* new_string(const std::string& text);  // +1
struct Error : Object {
  long code = 0;
  String* domain = nullptr;
  String* description = nullptr;
  ~Error();
};
Error* new_error(const std::string& domain, long code, const std::string& description);  // +1
struct Array : Object {
  std::vector<Object*> items;  // retained
  ~Array();
};
Array* new_array();  // +1; append with retain

}  // namespace fakert

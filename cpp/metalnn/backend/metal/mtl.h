// The one place the Metal host code includes metal-cpp. Backend-internal: public
// headers (context.h, the op encoders) stay plain C++ so ops/ and the bindings can
// include them with gcc.
#pragma once
#include <Foundation/Foundation.hpp>
#include <Metal/Metal.hpp>

#include <string>

namespace metalnn::metal {

// NS::String from UTF-8 (autoreleased; only use inside a call, never store).
inline NS::String* ns_string(const std::string& s) {
  return NS::String::string(s.c_str(), NS::UTF8StringEncoding);
}

// An NSError's description, or `fallback` when there is none.
inline std::string describe(const NS::Error* error, const char* fallback = "unknown error") {
  if (!error || !error->localizedDescription()) return fallback;
  const char* text = error->localizedDescription()->utf8String();
  return text ? text : fallback;
}

// Owns one +1 reference to a metal-cpp object and releases it once.
template <class T>
class Retained {
 public:
  Retained() = default;
  explicit Retained(T* p) : p_(p) {}  // adopts a +1 reference (new*/retain())
  Retained(const Retained& o) : p_(o.p_) { if (p_) p_->retain(); }
  Retained(Retained&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  Retained& operator=(Retained o) noexcept { std::swap(p_, o.p_); return *this; }
  ~Retained() { if (p_) p_->release(); }
  T* get() const { return p_; }
  T* operator->() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  T* p_ = nullptr;
};

}  // namespace metalnn::metal

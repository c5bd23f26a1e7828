// Typed errors. Every message starts with the op's name in brackets, e.g.
// "[conv2d] expected 4-D input (N, C, H, W), got (3, 28, 28)"; the bindings map
// the kind to ValueError / TypeError / RuntimeError / MemoryError.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace metalnn {

enum class ErrorKind { Value, Type, Runtime, Memory };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& op, const std::string& message)
      : std::runtime_error("[" + op + "] " + message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
// Messages are built without iostreams: a module that ends up with a static libstdc++
// next to another copy (seen on a lent GPU machine) crashed formatting numbers through
// the stream's locale. Numbers go through to_string / snprintf instead.
inline void append(std::string& s, const std::string& part) { s += part; }
inline void append(std::string& s, const char* part) { s += part ? part : "(null)"; }
inline void append(std::string& s, char part) { s += part; }
inline void append(std::string& s, bool part) { s += part ? "true" : "false"; }

template <class T>
void append(std::string& s, const T& part) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(part));
    s += buf;
  } else if constexpr (std::is_integral_v<T>) {
    s += std::to_string(part);
  } else if constexpr (std::is_enum_v<T>) {
    s += std::to_string(static_cast<long long>(part));
  } else {
    s += std::string(part);  // string_view and other string-like parts
  }
}
}  // namespace detail

// Builds a message from parts: fail(ErrorKind::Value, "conv2d", "got ", n).
template <class... Parts>
[[noreturn]] void fail(ErrorKind kind, const std::string& op, const Parts&... parts) {
  std::string message;
  (detail::append(message, parts), ...);
  throw Error(kind, op, message);
}

}  // namespace metalnn

// Typed errors. Every message starts with the op's name in brackets, e.g.
// "[conv2d] expected 4-D input (N, C, H, W), got (3, 28, 28)"; the bindings map
// the kind to ValueError / TypeError / RuntimeError / MemoryError.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

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

// Builds a message from any streamable parts: fail(ErrorKind::Value, "conv2d", "got ", n).
template <class... Parts>
[[noreturn]] void fail(ErrorKind kind, const std::string& op, const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw Error(kind, op, s.str());
}

}  // namespace metalnn

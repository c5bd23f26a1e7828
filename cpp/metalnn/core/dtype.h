// Element types of tensors. Storage types only: float16 is computed in float32
// unless an op's accumulation option asks for half.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace metalnn {

enum class DType : uint8_t { float32, float16, int32, int64, uint8 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::float32: return 4;
    case DType::float16: return 2;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::uint8: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::uint8: return "uint8";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::float32 || t == DType::float16; }

}  // namespace metalnn

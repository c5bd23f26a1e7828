// The MSL sources compiled into the binary. The definitions are generated at build time
// (embed_msl.cmake) from cpp/kernels/*.metal and the headers they include.
#pragma once
#include <cstddef>

namespace metalnn::metal {

struct EmbeddedFile {
  const char* name;  // file name inside cpp/kernels, e.g. "neuron.metal", "neuron_params.h"
  const char* text;
};

extern const EmbeddedFile kEmbeddedMsl[];
extern const size_t kEmbeddedMslCount;

}  // namespace metalnn::metal

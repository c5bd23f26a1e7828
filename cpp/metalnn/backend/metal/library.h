// MTL::Libraries compiled at run time from the MSL embedded in the binary: one library
// per .metal file (so file-local helpers of different families never clash), built on
// first use with fast math off.
#pragma once
#include <string>

#include "metalnn/backend/metal/mtl.h"

namespace metalnn::metal {

// The source of one embedded .metal file with its `#include "..."` lines replaced by the
// embedded headers, each at most once (the runtime compiler has no include path).
std::string expanded_source(const std::string& file);

// The .metal file that defines `kernel void <kernel>(`, or "" when none does.
std::string file_defining(const std::string& kernel);

// The compiled library of `file` (cached; compile errors become a RuntimeError naming `op`).
MTL::Library* library(const std::string& file, const char* op);

}  // namespace metalnn::metal

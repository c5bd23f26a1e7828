// The Metal backend as the rest of metalnn sees it: plain C++ (no metal-cpp), so ops/,
// core/ and the bindings include it with any compiler. Only built with METALNN_HAS_METAL.
#pragma once
#include <functional>
#include <memory>

#include "metalnn/core/allocator.h"
#include "metalnn/core/stream.h"

namespace metalnn::metal {

// True when a Metal device is present.
bool available();

// Runs `encode`, whose kernels record into a command buffer. Inside a Metal stream's
// command list they join that list's command buffer; otherwise a one-off command
// buffer is committed and waited for, and a GPU error is thrown as an Error naming `op`.
void run(const char* op, const std::function<void()>& encode);

// Shared-storage buffers for tensors on the metal device (a caching Allocator).
Allocator& allocator();

// One MTL::CommandBuffer per submitted CommandList; see stream.h.
std::unique_ptr<Stream> make_stream();

}  // namespace metalnn::metal

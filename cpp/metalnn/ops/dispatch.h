// Picks the backend that runs an op. Metal and CUDA add their branch here, so ops/
// stays free of backend details.
#pragma once
#include <utility>

#include "metalnn/core/device.h"
#include "metalnn/core/error.h"
#ifdef METALNN_HAS_METAL
#include "metalnn/backend/metal/context.h"
#endif

namespace metalnn {

template <class CpuFn>
void dispatch(const char* op, Device device, CpuFn&& cpu) {
  switch (device.type) {
    case DeviceType::cpu:
      cpu();
      return;
    default:
      fail(ErrorKind::Value, op, "no kernel for device ", device.str(), " in this build");
  }
}

// An op with a Metal kernel also passes its encoder, which records into the current
// Metal command buffer (a stream's list, or a one-off buffer that is waited for).
template <class CpuFn, class MetalFn>
void dispatch(const char* op, Device device, CpuFn&& cpu, MetalFn&& metal_fn) {
  switch (device.type) {
    case DeviceType::cpu:
      cpu();
      return;
#ifdef METALNN_HAS_METAL
    case DeviceType::metal:
      metal::run(op, std::forward<MetalFn>(metal_fn));
      return;
#endif
    default:
      fail(ErrorKind::Value, op, "no kernel for device ", device.str(), " in this build");
  }
}

// An op with a CUDA kernel wraps it in cuda_kernel(...): the lambda enqueues on the current
// CUDA stream. Without METALNN_HAS_CUDA it is never called, so never emitted or linked.
template <class F>
struct CudaKernel {
  F fn;
};
template <class F>
CudaKernel<F> cuda_kernel(F fn) {
  return CudaKernel<F>{std::move(fn)};
}

template <class CpuFn, class F>
void dispatch(const char* op, Device device, CpuFn&& cpu, CudaKernel<F> cuda_fn) {
  switch (device.type) {
    case DeviceType::cpu:
      cpu();
      return;
#ifdef METALNN_HAS_CUDA
    case DeviceType::cuda:
      cuda_fn.fn();
      return;
#endif
    default:
      fail(ErrorKind::Value, op, "no kernel for device ", device.str(), " in this build");
  }
}

template <class CpuFn, class MetalFn, class F>
void dispatch(const char* op, Device device, CpuFn&& cpu, MetalFn&& metal_fn, CudaKernel<F> cuda_fn) {
  if (device.type == DeviceType::cuda) return dispatch(op, device, cpu, std::move(cuda_fn));
  dispatch(op, device, std::forward<CpuFn>(cpu), std::forward<MetalFn>(metal_fn));
}

}  // namespace metalnn

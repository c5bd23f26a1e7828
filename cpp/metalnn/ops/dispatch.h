// Picks the backend that runs an op. Today only the CPU backend is built; Metal and
// CUDA add their branch here, so ops/ stays free of backend details.
#pragma once
#include "metalnn/core/device.h"
#include "metalnn/core/error.h"

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

}  // namespace metalnn

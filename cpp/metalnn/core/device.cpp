#include "metalnn/core/device.h"

#include <cstdlib>

#include "metalnn/core/error.h"
#ifdef METALNN_HAS_METAL
#include "metalnn/backend/metal/context.h"
#endif
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/device.h"
#endif

namespace metalnn {

const char* device_type_name(DeviceType t) {
  switch (t) {
    case DeviceType::cpu: return "cpu";
    case DeviceType::metal: return "metal";
    case DeviceType::cuda: return "cuda";
  }
  return "?";
}

std::string Device::str() const {
  std::string s = device_type_name(type);
  if (index != 0) s += ":" + std::to_string(index);
  return s;
}

Device parse_device(const std::string& name, const std::string& op) {
  std::string kind = name;
  int index = 0;
  auto colon = name.find(':');
  if (colon != std::string::npos) {
    kind = name.substr(0, colon);
    try {
      index = std::stoi(name.substr(colon + 1));
    } catch (...) {
      fail(ErrorKind::Value, op, "device: bad index in '", name, "'");
    }
  }
  Device d;
  if (kind == "cpu") d.type = DeviceType::cpu;
  else if (kind == "metal") d.type = DeviceType::metal;
  else if (kind == "cuda") d.type = DeviceType::cuda;
  else fail(ErrorKind::Value, op, "device: unknown device '", name, "' (expected cpu, metal or cuda)");
  d.index = index;
  if (!device_available(d.type))
    fail(ErrorKind::Value, op, "device: '", name, "' is not available in this build (available: cpu",
         device_available(DeviceType::metal) ? ", metal" : "",
         device_available(DeviceType::cuda) ? ", cuda" : "", ")");
  return d;
}

bool device_available(DeviceType t) {
#ifdef METALNN_HAS_METAL
  // Built with Metal, but a machine without a GPU (a VM, a headless runner) still lacks it.
  if (t == DeviceType::metal) return metal::available();
#endif
#ifdef METALNN_HAS_CUDA
  if (t == DeviceType::cuda) return cuda::available();
#endif
  return t == DeviceType::cpu;
}

std::vector<Device> available_devices() {
  std::vector<Device> out;
  for (auto t : {DeviceType::metal, DeviceType::cuda, DeviceType::cpu})
    if (device_available(t)) out.push_back(Device{t, 0});
  return out;
}

Device default_device() {
  if (const char* env = std::getenv("METALNN_DEVICE"); env && *env) return parse_device(env, "METALNN_DEVICE");
  return available_devices().front();
}

}  // namespace metalnn

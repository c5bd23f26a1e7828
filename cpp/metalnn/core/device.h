// Devices. The CPU backend is always built; Metal and CUDA are peers selected by
// METALNN_BUILD_METAL / METALNN_BUILD_CUDA and report themselves available here.
#pragma once
#include <string>
#include <vector>

namespace metalnn {

enum class DeviceType { cpu, metal, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

const char* device_type_name(DeviceType t);
// Parses "cpu", "metal", "cuda", "cuda:1"; throws a ValueError naming `op` otherwise.
Device parse_device(const std::string& name, const std::string& op = "device");
bool device_available(DeviceType t);
std::vector<Device> available_devices();
// The best device present, or METALNN_DEVICE when set.
Device default_device();

}  // namespace metalnn

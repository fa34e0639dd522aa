#include "worker/agent/device_discovery.h"

#include <dlfcn.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace clmae {
namespace {

// The few driver API entry points used, declared here with the driver's C
// ABI (cuda.h) so nothing from CUDA is needed to build.
using CuResult = int;
using CuDevice = int;
constexpr CuResult kCudaSuccess = 0;
constexpr CuResult kCudaErrorNoDevice = 100;

using CuInitFn = CuResult (*)(unsigned int);
using CuDeviceGetCountFn = CuResult (*)(int*);
using CuDeviceGetFn = CuResult (*)(CuDevice*, int);
using CuDeviceGetNameFn = CuResult (*)(char*, int, CuDevice);
using CuDeviceTotalMemFn = CuResult (*)(size_t*, CuDevice);
using CuGetErrorNameFn = CuResult (*)(CuResult, const char**);

struct DriverApi {
  CuInitFn init = nullptr;
  CuDeviceGetCountFn get_count = nullptr;
  CuDeviceGetFn get = nullptr;
  CuDeviceGetNameFn get_name = nullptr;
  CuDeviceTotalMemFn total_mem = nullptr;
  CuGetErrorNameFn error_name = nullptr;
};

std::string ErrorText(const DriverApi& api, const char* what, CuResult result) {
  const char* name = nullptr;
  if (api.error_name != nullptr && api.error_name(result, &name) == kCudaSuccess &&
      name != nullptr) {
    return absl::StrCat("CUDA driver: ", what, " failed: ", name);
  }
  return absl::StrCat("CUDA driver: ", what, " failed: error ", result);
}

}  // namespace

absl::StatusOr<std::vector<v1::Device>> DiscoverCudaDevices() {
  // Kept loaded for the life of the process: the driver does not support
  // being unloaded after cuInit.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return std::vector<v1::Device>{};
  DriverApi api;
  api.init = reinterpret_cast<CuInitFn>(dlsym(lib, "cuInit"));
  api.get_count = reinterpret_cast<CuDeviceGetCountFn>(dlsym(lib, "cuDeviceGetCount"));
  api.get = reinterpret_cast<CuDeviceGetFn>(dlsym(lib, "cuDeviceGet"));
  api.get_name = reinterpret_cast<CuDeviceGetNameFn>(dlsym(lib, "cuDeviceGetName"));
  api.total_mem = reinterpret_cast<CuDeviceTotalMemFn>(dlsym(lib, "cuDeviceTotalMem_v2"));
  api.error_name = reinterpret_cast<CuGetErrorNameFn>(dlsym(lib, "cuGetErrorName"));
  if (api.init == nullptr || api.get_count == nullptr || api.get == nullptr ||
      api.get_name == nullptr || api.total_mem == nullptr) {
    return absl::InternalError("CUDA driver: libcuda.so.1 lacks the device query functions");
  }
  CuResult result = api.init(0);
  // A driver without a usable device (e.g. a container without GPUs that
  // still carries libcuda) is a CPU node.
  if (result == kCudaErrorNoDevice) return std::vector<v1::Device>{};
  if (result != kCudaSuccess) return absl::InternalError(ErrorText(api, "cuInit", result));
  int count = 0;
  result = api.get_count(&count);
  if (result != kCudaSuccess) {
    return absl::InternalError(ErrorText(api, "cuDeviceGetCount", result));
  }
  std::vector<v1::Device> devices;
  for (int i = 0; i < count; ++i) {
    CuDevice device = 0;
    result = api.get(&device, i);
    if (result != kCudaSuccess) return absl::InternalError(ErrorText(api, "cuDeviceGet", result));
    char name[256] = {};
    result = api.get_name(name, sizeof(name) - 1, device);
    if (result != kCudaSuccess) {
      return absl::InternalError(ErrorText(api, "cuDeviceGetName", result));
    }
    size_t bytes = 0;
    result = api.total_mem(&bytes, device);
    if (result != kCudaSuccess) {
      return absl::InternalError(ErrorText(api, "cuDeviceTotalMem", result));
    }
    v1::Device& d = devices.emplace_back();
    d.set_index(i);
    d.set_name(name);
    d.set_memory_bytes(static_cast<int64_t>(bytes));
    d.set_kind("cuda");
  }
  return devices;
}

}  // namespace clmae

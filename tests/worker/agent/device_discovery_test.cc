#include "worker/agent/device_discovery.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace clmae {
namespace {

// Lines of `nvidia-smi -L` (one per GPU), or -1 when it cannot run.
int NvidiaSmiCount() {
  std::FILE* pipe = popen("nvidia-smi -L 2>/dev/null", "r");
  if (pipe == nullptr) return -1;
  int lines = 0;
  char buffer[512];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) {
    if (std::string(buffer).rfind("GPU ", 0) == 0) ++lines;
  }
  return pclose(pipe) == 0 ? lines : -1;
}

TEST(DeviceDiscoveryTest, ReportsEachCudaDeviceWithNameAndMemory) {
  absl::StatusOr<std::vector<v1::Device>> devices = DiscoverCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (devices->empty()) GTEST_SKIP() << "no CUDA device on this machine";
  for (size_t i = 0; i < devices->size(); ++i) {
    const v1::Device& d = (*devices)[i];
    EXPECT_EQ(d.index(), static_cast<int>(i));
    EXPECT_EQ(d.kind(), "cuda");
    EXPECT_FALSE(d.name().empty());
    EXPECT_GT(d.memory_bytes(), int64_t{1} << 30) << d.name();
    std::printf("cuda:%d %s %lld MiB\n", d.index(), d.name().c_str(),
                static_cast<long long>(d.memory_bytes() >> 20));
  }
  // With every GPU visible, the driver and nvidia-smi agree on the count.
  const int smi = NvidiaSmiCount();
  if (smi >= 0 && std::getenv("CUDA_VISIBLE_DEVICES") == nullptr) {
    EXPECT_EQ(static_cast<int>(devices->size()), smi);
  }
}

TEST(DeviceDiscoveryTest, RepeatedCallsAgree) {
  absl::StatusOr<std::vector<v1::Device>> first = DiscoverCudaDevices();
  absl::StatusOr<std::vector<v1::Device>> second = DiscoverCudaDevices();
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(first->size(), second->size());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].name(), (*second)[i].name());
  }
}

}  // namespace
}  // namespace clmae

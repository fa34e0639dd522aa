#include "worker/engine/train/stream_clock.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace clmae {

StreamClock::StreamClock(c10::Device device) : device_(device), cuda_(device.is_cuda()) {}

int StreamClock::Stamp() {
  if (!cuda_) {
    host_.push_back(std::chrono::steady_clock::now());
    return static_cast<int>(host_.size()) - 1;
  }
  // BACKEND_DEFAULT: a CUDA event with timing enabled.
  events_.emplace_back(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
  const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  events_.back().record(impl->getStream(device_));
  return static_cast<int>(events_.size()) - 1;
}

double StreamClock::Seconds(int from, int to) const {
  if (from < 0 || to < 0 || from >= size() || to >= size()) return 0.0;
  if (!cuda_) return std::chrono::duration<double>(host_[to] - host_[from]).count();
  events_[to].synchronize();
  return events_[from].elapsedTime(events_[to]) / 1e3;  // milliseconds
}

}  // namespace clmae

#pragma once

// Time stamps taken in the order the device runs work, so phases can be
// timed without stopping the host from queueing the next ones.

#include <c10/core/Device.h>
#include <c10/core/Event.h>

#include <chrono>
#include <vector>

namespace clmae {

// On CUDA each stamp is an event recorded on the current stream, read after
// the device passed it; elsewhere (the CPU runs an op when it is called) the
// host clock at the call. Movable, not thread-safe.
class StreamClock {
 public:
  explicit StreamClock(c10::Device device);
  StreamClock() : StreamClock(c10::Device(c10::DeviceType::CPU)) {}

  // Records a stamp after the work queued so far; returns its index.
  int Stamp();
  // Seconds from stamp `from` to stamp `to`; on CUDA waits until the device
  // reached `to`. 0 for an index that was not stamped.
  double Seconds(int from, int to) const;
  int size() const { return static_cast<int>(cuda_ ? events_.size() : host_.size()); }

 private:
  c10::Device device_;
  bool cuda_;
  std::vector<c10::Event> events_;
  std::vector<std::chrono::steady_clock::time_point> host_;
};

}  // namespace clmae

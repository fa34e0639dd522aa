#pragma once

// Where the time of queued training iterations goes, from LibTorch's Kineto
// profiler: device kernels grouped into GEMM, attention, normalisation,
// elementwise, optimizer, copies and other, plus the time the device sat
// idle inside the profiled window (host-side gaps). On the CPU the same
// groups are formed from the profiled operators' own (self) times.

#include <functional>
#include <string>

namespace clmae {

// Profiles `run` (which queues and finishes the iterations to look at),
// writes a Chrome trace to `trace_path` (viewable in Perfetto or
// chrome://tracing) and prints the split. `cuda`: profile device kernels.
// Returns false (with a message on stderr) when the profiler fails.
bool ProfileSplit(bool cuda, int iterations, const std::string& trace_path,
                  const std::function<bool()>& run);

// The group a kernel or operator named `name` falls in (exposed for tests).
std::string ProfileGroup(const std::string& name);

}  // namespace clmae

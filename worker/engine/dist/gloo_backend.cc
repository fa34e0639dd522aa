// ProcessGroupGloo from the PyTorch wheel. The wheel links Gloo into
// libtorch_cpu but ships none of Gloo's headers, which ProcessGroupGloo.hpp
// includes; Debian's libgloo-dev supplies them as declarations only (nothing
// links against Debian's libgloo). See docs/distributed.md for why that is
// sound: this file only names Gloo types through pointers and never
// instantiates a Gloo class.
#define USE_C10D_GLOO 1

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "torch/csrc/distributed/c10d/ProcessGroupGloo.hpp"
#include "worker/engine/dist/c10d_backends.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || absl::StartsWith(addr, "127.") || addr == "::1";
}

}  // namespace

absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> NewGlooBackend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    const std::string& master_addr, std::chrono::milliseconds timeout) {
  return CatchAll(
      "creating the Gloo process group",
      [&]() -> absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> {
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        // A job on one machine talks over loopback; across machines
        // GLOO_SOCKET_IFNAME picks the interface, as in PyTorch.
        const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
        if (IsLoopback(master_addr)) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        } else if (ifname != nullptr && *ifname != '\0') {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        } else {
          options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        options->threads = 2;
        c10::intrusive_ptr<c10d::Backend> backend =
            c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
        return backend;
      });
}

}  // namespace clmae

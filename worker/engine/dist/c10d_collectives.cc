#include "worker/engine/dist/c10d_collectives.h"

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "c10/core/impl/VirtualGuardImpl.h"
#include "common/status_macros.h"
#include "torch/csrc/distributed/c10d/TCPStore.hpp"
#include "worker/engine/dist/bucketed_gradient_averager.h"
#include "worker/engine/dist/c10d_backends.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

class C10dCollectives final : public Collectives {
 public:
  C10dCollectives(const DistOptions& options, torch::Device device,
                  c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<c10d::Backend> backend)
      : options_(options),
        device_(device),
        store_(std::move(store)),
        backend_(std::move(backend)) {}

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }

  absl::StatusOr<std::unique_ptr<GradientAverager>> NewGradientAverager(
      std::vector<torch::Tensor> params, std::string name,
      const GradientAveragerOptions& averager_options) override {
    ASSIGN_OR_RETURN(auto averager,
                     BucketedGradientAverager::Create(backend_, options_.rank, options_.world_size,
                                                      std::move(params), std::move(name),
                                                      averager_options, options_.timeout));
    return std::unique_ptr<GradientAverager>(std::move(averager));
  }

  absl::Status Broadcast(const std::vector<torch::Tensor>& tensors) override {
    // One flat buffer per (dtype, device): a few collectives, not hundreds.
    std::map<std::pair<int, std::string>, std::vector<torch::Tensor>> groups;
    for (const auto& t : tensors) {
      groups[{static_cast<int>(t.scalar_type()), t.device().str()}].push_back(t);
    }
    for (auto& group : groups) {
      // Not a structured binding: clang before 16 cannot capture one.
      std::vector<torch::Tensor>& members = group.second;
      RETURN_IF_ERROR(
          Run(absl::StrCat("broadcast of ", members.size(), " tensors from rank 0"), [&] {
            torch::NoGradGuard no_grad;
            std::vector<torch::Tensor> flat_parts;
            for (const auto& t : members) flat_parts.push_back(t.reshape({-1}));
            std::vector<at::Tensor> flat = {torch::cat(flat_parts)};
            c10d::BroadcastOptions opts;
            opts.rootRank = 0;
            opts.timeout = Millis(options_.timeout);
            backend_->broadcast(flat, opts)->wait(Millis(options_.timeout));
            int64_t offset = 0;
            for (auto& t : members) {
              t.copy_(flat[0].narrow(0, offset, t.numel()).view(t.sizes()));
              offset += t.numel();
            }
          }));
    }
    return absl::OkStatus();
  }

  absl::Status AverageScalars(std::vector<double>& values) override {
    if (values.empty()) return absl::OkStatus();
    return Run("all-reduce of the logged scalars", [&] {
      auto t = Reduce(values, c10d::ReduceOp::SUM);
      auto a = t.accessor<double, 1>();
      for (size_t i = 0; i < values.size(); ++i) values[i] = a[i] / options_.world_size;
    });
  }

  absl::Status MinMaxScalars(std::vector<double>& values) override {
    const size_t n = values.size();
    if (n == 0) return absl::OkStatus();
    return Run("min/max all-reduce of scalars", [&] {
      auto lo = Reduce(values, c10d::ReduceOp::MIN);
      auto hi = Reduce(values, c10d::ReduceOp::MAX);
      values.resize(2 * n);
      for (size_t i = 0; i < n; ++i) {
        values[i] = lo[i].item<double>();
        values[n + i] = hi[i].item<double>();
      }
    });
  }

  absl::Status Barrier() override {
    return Run("barrier", [&] {
      c10d::BarrierOptions opts;
      opts.timeout = Millis(options_.timeout);
      if (device_.is_cuda()) opts.device_ids = {device_.index()};
      backend_->barrier(opts)->wait(Millis(options_.timeout));
    });
  }

 private:
  absl::Status Run(const std::string& what, const std::function<void()>& fn) {
    return CollectiveStatus(options_.rank, options_.world_size, what, fn);
  }

  // All-reduces `values` with `op` on the backend's device; returns them on
  // the CPU.
  torch::Tensor Reduce(const std::vector<double>& values, c10d::ReduceOp::RedOpType op) {
    auto cpu = torch::tensor(values, torch::kFloat64);
    std::vector<at::Tensor> tensors = {cpu.to(device_)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = op;
    opts.timeout = Millis(options_.timeout);
    backend_->allreduce(tensors, opts)->wait(Millis(options_.timeout));
    return tensors[0].to(torch::kCPU);
  }

  DistOptions options_;
  torch::Device device_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
};

absl::Status CheckOptions(const DistOptions& o) {
  if (o.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size must be at least 1, got ", o.world_size));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", o.rank, " is outside [0, ", o.world_size, ")"));
  }
  if (o.world_size > 1) {
    if (o.master_addr.empty()) {
      return absl::InvalidArgumentError("MASTER_ADDR (the address of rank 0) is empty");
    }
    if (o.master_port < 1 || o.master_port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("MASTER_PORT must be in [1, 65535], got ", o.master_port));
    }
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the collective timeout must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collectives>> ConnectCollectives(const DistOptions& options,
                                                                const torch::Device& requested) {
  // Plain "cuda" means the current device, which is 0 unless set.
  const torch::Device device =
      requested.is_cuda() && !requested.has_index() ? torch::Device(torch::kCUDA, 0) : requested;
  RETURN_IF_ERROR(CheckOptions(options));
  if (options.world_size == 1 && !options.connect_single_rank) {
    return std::make_unique<LocalCollectives>();
  }

  c10::intrusive_ptr<c10d::Store> store;
  const std::string where = absl::StrCat(options.master_addr, ":", options.master_port);
  RETURN_IF_ERROR(
      CollectiveStatus(options.rank, options.world_size,
                       options.rank == 0 ? absl::StrCat("hosting the rendezvous store at ", where)
                                         : absl::StrCat("joining the rendezvous at ", where),
                       [&] {
                         c10d::TCPStoreOptions so;
                         so.port = static_cast<uint16_t>(options.master_port);
                         so.isServer = options.rank == 0;
                         so.numWorkers = options.world_size;
                         so.waitWorkers = true;
                         so.timeout = Millis(options.timeout);
                         store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, so);
                       }));

  c10::intrusive_ptr<c10d::Backend> backend;
  if (device.is_cuda()) {
    // NCCL binds its communicator to the current device.
    RETURN_IF_ERROR(CatchAll(absl::StrCat("selecting ", device.str()), [&] {
      c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).setDevice(device);
      return absl::OkStatus();
    }));
    ASSIGN_OR_RETURN(
        backend, NewNcclBackend(store, options.rank, options.world_size, Millis(options.timeout)));
  } else {
    ASSIGN_OR_RETURN(backend, NewGlooBackend(store, options.rank, options.world_size,
                                             options.master_addr, Millis(options.timeout)));
  }
  auto collectives = std::make_unique<C10dCollectives>(options, device, store, backend);
  // Every rank is connected once the first collective completes.
  RETURN_IF_ERROR(collectives->Barrier());
  return std::unique_ptr<Collectives>(std::move(collectives));
}

}  // namespace clmae

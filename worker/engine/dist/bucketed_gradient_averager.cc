#include "worker/engine/dist/bucketed_gradient_averager.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "torch/csrc/autograd/function.h"
#include "torch/csrc/autograd/utils/lambda_post_hook.h"
#include "torch/csrc/autograd/variable.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

using Clock = std::chrono::steady_clock;

std::string FirstLine(std::string msg) {
  if (auto pos = msg.find('\n'); pos != std::string::npos) msg.resize(pos);
  return msg;
}

absl::Status Classify(const std::string& context, const std::string& message) {
  const std::string lower = absl::AsciiStrToLower(message);
  const std::string text = absl::StrCat(context, ": ", message);
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout")) {
    return absl::DeadlineExceededError(text);
  }
  return absl::UnavailableError(text);
}

}  // namespace

absl::Status CollectiveStatus(int rank, int world_size, const std::string& what,
                              const std::function<void()>& fn) {
  const std::string context = absl::StrCat("rank ", rank, " of ", world_size, ": ", what);
  try {
    fn();
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return Classify(context, FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Classify(context, FirstLine(e.what()));
  }
}

BucketedGradientAverager::BucketedGradientAverager(c10::intrusive_ptr<c10d::Backend> backend,
                                                   int rank, int world_size,
                                                   std::vector<torch::Tensor> params,
                                                   std::string name,
                                                   GradientAveragerOptions options,
                                                   absl::Duration timeout)
    : backend_(std::move(backend)),
      rank_(rank),
      world_size_(world_size),
      params_(std::move(params)),
      name_(std::move(name)),
      options_(options),
      timeout_(timeout) {}

absl::StatusOr<std::unique_ptr<BucketedGradientAverager>> BucketedGradientAverager::Create(
    c10::intrusive_ptr<c10d::Backend> backend, int rank, int world_size,
    std::vector<torch::Tensor> params, std::string name, GradientAveragerOptions options,
    absl::Duration timeout) {
  if (options.bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient bucket size must be positive, got ", options.bucket_bytes));
  }
  std::unique_ptr<BucketedGradientAverager> averager(new BucketedGradientAverager(
      std::move(backend), rank, world_size, std::move(params), std::move(name), options, timeout));
  RETURN_IF_ERROR(
      CatchAll(absl::StrCat("bucketing the ", averager->name_), [&] { return averager->Build(); }));
  return averager;
}

absl::Status BucketedGradientAverager::Build() {
  const int n = static_cast<int>(params_.size());
  bucket_of_.assign(n, -1);
  ready_.assign(n, false);
  // Reverse order: the last layers' gradients come first in backward.
  int64_t bytes = 0;
  for (int i = n - 1; i >= 0; --i) {
    const torch::Tensor& p = params_[i];
    if (!p.requires_grad() || !p.is_leaf()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " of the ", name_, " is not a leaf that requires grad"));
    }
    const bool fresh = buckets_.empty() || bytes >= options_.bucket_bytes ||
                       params_[buckets_.back().members.front()].scalar_type() != p.scalar_type() ||
                       params_[buckets_.back().members.front()].device() != p.device();
    if (fresh) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    b.offsets.push_back(b.members.empty() ? 0
                                          : b.offsets.back() + params_[b.members.back()].numel());
    b.members.push_back(i);
    bucket_of_[i] = static_cast<int>(buckets_.size()) - 1;
    bytes += p.numel() * p.element_size();
  }
  for (Bucket& b : buckets_) {
    const torch::Tensor& last = params_[b.members.back()];
    const int64_t numel = b.offsets.back() + last.numel();
    b.flat = torch::empty({numel}, last.options().requires_grad(false));
    b.pending = static_cast<int>(b.members.size());
  }
  for (int i = 0; i < n; ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    if (!acc) {
      return absl::InternalError(
          absl::StrCat("parameter ", i, " of the ", name_, " has no gradient accumulator"));
    }
    hook_keys_.push_back(
        acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
            [this, i](const torch::autograd::variable_list& outputs,
                      const torch::autograd::variable_list&) {
              OnGradientReady(i);
              return outputs;
            })));
    accumulators_.push_back(std::move(acc));
  }
  return absl::OkStatus();
}

BucketedGradientAverager::~BucketedGradientAverager() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
  // A bucket still in flight (an error cut the step short) must not write
  // into freed memory: wait for it, ignoring its outcome.
  for (Bucket& b : buckets_) {
    if (b.work) {
      try {
        b.work->wait(std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_)));
      } catch (...) {
      }
    }
  }
}

void BucketedGradientAverager::Arm() { armed_ = options_.overlap; }

void BucketedGradientAverager::OnGradientReady(int param) {
  if (!armed_ || ready_[param]) return;
  ready_[param] = true;
  if (--buckets_[bucket_of_[param]].pending == 0) LaunchReadyBuckets();
}

void BucketedGradientAverager::LaunchReadyBuckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    const int b = static_cast<int>(next_launch_++);
    if (!hook_error_.empty()) continue;  // Finish reports the first failure
    try {
      Launch(b);
    } catch (const c10::Error& e) {
      hook_error_ = FirstLine(e.what_without_backtrace());
    } catch (const std::exception& e) {
      hook_error_ = FirstLine(e.what());
    }
  }
}

void BucketedGradientAverager::Launch(int index) {
  torch::NoGradGuard no_grad;
  Bucket& b = buckets_[index];
  for (size_t k = 0; k < b.members.size(); ++k) {
    const torch::Tensor& p = params_[b.members[k]];
    auto region = b.flat.narrow(0, b.offsets[k], p.numel());
    const torch::Tensor& g = p.grad();
    if (g.defined()) {
      region.copy_(g.reshape({-1}));
    } else {
      region.zero_();
    }
  }
  b.flat.div_(world_size_);
  std::vector<at::Tensor> tensors = {b.flat};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  opts.timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_));
  b.work = backend_->allreduce(tensors, opts);
}

std::string BucketedGradientAverager::Describe(int bucket) const {
  const Bucket& b = buckets_[bucket];
  return absl::StrFormat("all-reduce of the %s (bucket %d of %d, %.1f MB)", name_, bucket + 1,
                         buckets_.size(), b.flat.numel() * b.flat.element_size() / 1e6);
}

absl::Status BucketedGradientAverager::Finish() {
  const auto t0 = Clock::now();
  armed_ = false;
  absl::Status status;
  if (!hook_error_.empty()) {
    status = Classify(absl::StrCat("rank ", rank_, " of ", world_size_, ": all-reduce of the ",
                                   name_, " (launched during backward)"),
                      hook_error_);
  }
  // Whatever backward did not complete (overlap off, or parameters that got
  // no gradient) is launched now, in order.
  for (size_t b = next_launch_; b < buckets_.size() && status.ok(); ++b) {
    status = CollectiveStatus(rank_, world_size_, Describe(static_cast<int>(b)),
                              [&] { Launch(static_cast<int>(b)); });
  }
  const auto deadline = Clock::now() + absl::ToChronoMilliseconds(timeout_);
  for (size_t b = 0; b < buckets_.size() && status.ok(); ++b) {
    Bucket& bucket = buckets_[b];
    status = CollectiveStatus(rank_, world_size_, Describe(static_cast<int>(b)), [&] {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      bucket.work->wait(std::max(left, std::chrono::milliseconds(1)));
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < bucket.members.size(); ++k) {
        torch::Tensor& g = params_[bucket.members[k]].mutable_grad();
        if (!g.defined()) continue;
        g.copy_(bucket.flat.narrow(0, bucket.offsets[k], g.numel()).view(g.sizes()));
      }
    });
    if (status.ok()) bucket.work.reset();
  }
  // Ready for the next step.
  for (Bucket& bucket : buckets_) {
    bucket.pending = static_cast<int>(bucket.members.size());
  }
  std::fill(ready_.begin(), ready_.end(), false);
  next_launch_ = 0;
  hook_error_.clear();
  last_wait_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
  return status;
}

}  // namespace clmae

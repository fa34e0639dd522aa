#include "bench/step_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace clmae {

namespace profiler = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;

std::string ProfileGroup(const std::string& raw) {
  const std::string n = absl::AsciiStrToLower(raw);
  auto any = [&](std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
      if (absl::StrContains(n, k)) return true;
    }
    return false;
  };
  if (any({"memcpy", "memset", "copy_", "aten::to", "_to_copy"})) return "copies";
  if (any({"adam", "foreach", "multi_tensor"})) return "optimizer";
  if (any({"flash", "fmha", "attention", "attn", "softmax"})) return "attention";
  if (any({"gemm", "cutlass", "xmma", "cublas", "sm90_", "sm80_", "ampere_", "hopper", "aten::mm",
           "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "conv"})) {
    return "gemm";
  }
  if (any({"layer_norm", "layernorm", "norm", "reduce", "sum", "mean"})) return "normalisation";
  if (any({"elementwise", "vectorized", "unrolled", "gelu", "add", "mul", "sigmoid", "exp", "where",
           "fill", "aten::"})) {
    return "elementwise";
  }
  return "other";
}

bool ProfileSplit(bool cuda, int iterations, const std::string& trace_path,
                  const std::function<bool()>& run) {
  std::set<ActivityType> activities = {ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  std::unique_ptr<profiler::ProfilerResult> result;
  try {
    profiler::prepareProfiler(config, activities);
    profiler::enableProfiler(config, activities);
    const bool ok = run();
    result = profiler::disableProfiler();
    if (!ok) return false;
    if (!trace_path.empty()) result->save(trace_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "profiler: %s\n", e.what());
    return false;
  }
  std::map<std::string, double> group_ns;
  std::vector<std::pair<uint64_t, uint64_t>> busy;  // device kernel intervals
  std::map<std::string, double> top;                // by name
  uint64_t first = UINT64_MAX, last = 0;
  if (cuda) {
    for (const auto& e : result->events()) {
      if (e.deviceType() != c10::DeviceType::CUDA || e.durationNs() == 0) continue;
      const std::string name = e.name();
      group_ns[ProfileGroup(name)] += static_cast<double>(e.durationNs());
      top[name] += static_cast<double>(e.durationNs());
      busy.emplace_back(e.startNs(), e.endNs());
      first = std::min(first, e.startNs());
      last = std::max(last, e.endNs());
    }
  } else {
    // Operators nest (aten::linear calls aten::addmm): count each one's own
    // time, its duration less that of the operators directly inside it on
    // the same thread.
    std::vector<const profiler::KinetoEvent*> ops;
    for (const auto& e : result->events()) {
      if (e.deviceType() == c10::DeviceType::CPU && e.durationNs() > 0) ops.push_back(&e);
    }
    std::sort(ops.begin(), ops.end(), [](auto* a, auto* b) {
      return a->startThreadId() != b->startThreadId() ? a->startThreadId() < b->startThreadId()
             : a->startNs() != b->startNs()           ? a->startNs() < b->startNs()
                                                      : a->durationNs() > b->durationNs();
    });
    std::vector<double> self(ops.size());
    std::vector<size_t> stack;
    for (size_t i = 0; i < ops.size(); ++i) {
      self[i] = static_cast<double>(ops[i]->durationNs());
      while (!stack.empty() && (ops[stack.back()]->startThreadId() != ops[i]->startThreadId() ||
                                ops[stack.back()]->endNs() <= ops[i]->startNs())) {
        stack.pop_back();
      }
      if (!stack.empty()) self[stack.back()] -= static_cast<double>(ops[i]->durationNs());
      stack.push_back(i);
      first = std::min(first, ops[i]->startNs());
      last = std::max(last, ops[i]->endNs());
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      const std::string name = ops[i]->name();
      group_ns[ProfileGroup(name)] += std::max(0.0, self[i]);
      top[name] += std::max(0.0, self[i]);
    }
  }
  if (last <= first) {
    std::fprintf(stderr, "profiler: no %s events were recorded\n", cuda ? "CUDA kernel" : "CPU");
    return false;
  }
  const double window = static_cast<double>(last - first);
  double total = 0;
  for (const auto& [g, ns] : group_ns) total += ns;
  std::printf("profile (%s, %d iterations, %.2f ms each):\n",
              cuda ? "device kernels" : "CPU operators", iterations, window / 1e6 / iterations);
  std::vector<std::pair<double, std::string>> rows;
  for (const auto& [g, ns] : group_ns) rows.emplace_back(ns, g);
  std::sort(rows.rbegin(), rows.rend());
  for (const auto& [ns, g] : rows) {
    std::printf("  %-14s %8.2f ms/iter  %5.1f%% of the window\n", g.c_str(), ns / 1e6 / iterations,
                100 * ns / window);
  }
  if (cuda) {
    // The union of kernel intervals; the rest of the window the device idled.
    std::sort(busy.begin(), busy.end());
    double covered = 0;
    uint64_t cur_start = busy.front().first, cur_end = busy.front().second;
    for (const auto& [s, e] : busy) {
      if (s > cur_end) {
        covered += static_cast<double>(cur_end - cur_start);
        cur_start = s;
        cur_end = e;
      } else {
        cur_end = std::max(cur_end, e);
      }
    }
    covered += static_cast<double>(cur_end - cur_start);
    std::printf("  %-14s %8.2f ms/iter  %5.1f%% of the window (no kernel running)\n", "device idle",
                (window - covered) / 1e6 / iterations, 100 * (window - covered) / window);
  }
  std::vector<std::pair<double, std::string>> names;
  for (const auto& [n, ns] : top) names.emplace_back(ns, n);
  std::sort(names.rbegin(), names.rend());
  std::printf("  top %s:\n", cuda ? "kernels" : "operators (self time)");
  for (size_t i = 0; i < std::min<size_t>(12, names.size()); ++i) {
    std::string n = names[i].second;
    if (n.size() > 90) n = n.substr(0, 87) + "...";
    std::printf("    %7.2f ms/iter %5.1f%%  [%s] %s\n", names[i].first / 1e6 / iterations,
                100 * names[i].first / std::max(1.0, total), ProfileGroup(names[i].second).c_str(),
                n.c_str());
  }
  return true;
}

}  // namespace clmae

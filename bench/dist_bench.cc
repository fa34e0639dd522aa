// clmae-bench-dist: what data parallelism costs, measured with real c10d
// process groups (Gloo on CPU over loopback, NCCL on CUDA), ranks as threads
// of this process, each with its own replica:
//   1. gradient averaging bandwidth for gradient-sized buffers;
//   2. the share of step time spent waiting on communication, with the
//      buckets overlapped with backward and without (all at the end);
//   3. throughput of `world` ranks against one rank, and the scaling
//      efficiency: (world-rank images/s) / (world × one-rank images/s).
//
//   clmae-bench-dist [--preset tiny] [--batch 32] [--steps 10] [--warmup 2]
//                    [--world 2] [--threads 1] [--device cpu|cuda]
//                    [--sizes 1,4,25,100] [--bucket-mb 25] [--bf16]
//
// On CUDA the ranks share the one device (--world 1 gives NCCL's one-rank
// figures; a multi-GPU machine is needed for real NCCL scaling). The last
// line is a JSON record.

#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/model_config.h"
#include "worker/engine/dist/c10d_collectives.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/train_step.h"

namespace clmae {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string preset = "tiny";
  int batch = 32;
  int steps = 10;
  int warmup = 2;
  int world = 2;
  int threads = 1;
  std::string device = "cpu";
  std::vector<double> sizes_mb = {1, 4, 25, 100};
  double bucket_mb = 25;
  bool bf16 = false;
};

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

void Sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// Runs body(rank, collectives) on `world` connected ranks, one thread each.
bool RunRanks(const Args& args, int world, const std::function<bool(int, Collectives&)>& body) {
  const int port = FreePort();
  std::vector<std::thread> threads;
  std::vector<int> ok(world, 0);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      DistOptions o;
      o.rank = r;
      o.world_size = world;
      o.master_port = port;
      o.timeout = absl::Minutes(2);
      o.connect_single_rank = true;
      auto c = ConnectCollectives(o, torch::Device(args.device));
      if (!c.ok()) {
        std::fprintf(stderr, "rank %d: %s\n", r, std::string(c.status().message()).c_str());
        return;
      }
      ok[r] = body(r, **c) ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  if (!std::all_of(ok.begin(), ok.end(), [](int v) { return v == 1; })) {
    std::fprintf(stderr, "clmae-bench-dist: a rank failed (see above)\n");
    std::exit(1);
  }
  return true;
}

struct Bandwidth {
  double mb, ms, algbw, busbw;
};

// Gradient averaging of one flat buffer of `mb` MB: copy in, all-reduce,
// copy back — what one bucket costs.
std::vector<Bandwidth> MeasureBandwidth(const Args& args) {
  std::vector<Bandwidth> out;
  for (double mb : args.sizes_mb) {
    const int64_t numel = static_cast<int64_t>(mb * 1e6 / 4);
    std::vector<double> seconds(args.world, 0);
    const int iters = mb >= 50 ? 5 : 10;
    RunRanks(args, args.world, [&](int r, Collectives& c) {
      auto p = torch::zeros({numel}, torch::TensorOptions(torch::Device(args.device)))
                   .requires_grad_(true);
      GradientAveragerOptions ao;
      ao.bucket_bytes = numel * 4;
      ao.overlap = false;
      auto avg = c.NewGradientAverager({p}, "benchmark buffer", ao);
      if (!avg.ok()) return false;
      p.mutable_grad() = torch::ones_like(p);
      for (int i = 0; i < 2 + iters; ++i) {
        if (i == 2) {
          Sync(p.device());
          if (!c.Barrier().ok()) return false;
          seconds[r] = 0;
        }
        auto t0 = Clock::now();
        if (!(*avg)->Finish().ok()) return false;
        Sync(p.device());
        if (i >= 2) seconds[r] += std::chrono::duration<double>(Clock::now() - t0).count();
      }
      return true;
    });
    const double s = *std::max_element(seconds.begin(), seconds.end()) / iters;
    const double bytes = numel * 4.0;
    const double algbw = bytes / s / 1e9;
    out.push_back({mb, 1e3 * s, algbw, algbw * 2.0 * (args.world - 1) / args.world});
  }
  return out;
}

struct StepFigures {
  double images_per_second = 0;  // all ranks
  double step_ms = 0;
  double comm_wait_ms = 0;  // per step, averaged over ranks
};

// Trains `world` replicas for warmup + steps iterations on synthetic
// batches; world 0 means one rank without any process group.
StepFigures MeasureSteps(const Args& args, const ModelConfig& config, int world, bool overlap) {
  std::mutex mu;
  double total_seconds = 0, wait = 0;
  auto body = [&](int rank, Collectives& c) {
    const torch::Device device(args.device);
    torch::manual_seed(rank);
    MaeVit mae(config);
    MaskingNet masker(config);
    mae->to(device);
    masker->to(device);
    auto mae_opt = MakeAdamW(*mae, {});
    auto masker_opt = MakeAdamW(*masker, {});
    SetLearningRate(*mae_opt, 1e-4);
    SetLearningRate(*masker_opt, 1e-4);
    if (!c.Broadcast(mae->parameters()).ok() || !c.Broadcast(masker->parameters()).ok())
      return false;
    StepOptions so;
    so.bf16 = args.bf16;
    so.averaging.bucket_bytes = static_cast<int64_t>(args.bucket_mb * 1e6);
    so.averaging.overlap = overlap;
    TwoPhaseStep step(mae, masker, mae_opt.get(), masker_opt.get(), &c, so);
    auto imgs =
        torch::randn({args.batch, config.in_chans, config.img_size, config.img_size}).to(device);
    double secs = 0, w = 0;
    for (int i = 0; i < args.warmup + args.steps; ++i) {
      if (i == args.warmup && !c.Barrier().ok()) return false;
      auto t0 = Clock::now();
      auto stats = step.RunAndRead(imgs, 0.5, i, true);
      if (!stats.ok()) {
        std::fprintf(stderr, "rank %d: %s\n", rank, std::string(stats.status().message()).c_str());
        return false;
      }
      Sync(device);
      if (i >= args.warmup) {
        secs += std::chrono::duration<double>(Clock::now() - t0).count();
        w += stats->comm_wait_seconds;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    total_seconds = std::max(total_seconds, secs);
    wait += w / std::max(world, 1);
    return true;
  };
  if (world == 0) {
    LocalCollectives local;
    body(0, local);
  } else {
    RunRanks(args, world, body);
  }
  StepFigures f;
  const int ranks = std::max(world, 1);
  f.step_ms = 1e3 * total_seconds / args.steps;
  f.images_per_second = ranks * args.batch * args.steps / total_seconds;
  f.comm_wait_ms = 1e3 * wait / args.steps;
  return f;
}

int Usage(const char* bad) {
  std::fprintf(stderr,
               "clmae-bench-dist: bad argument '%s'\n"
               "usage: clmae-bench-dist [--preset NAME] [--batch N] [--steps N] [--warmup N]\n"
               "       [--world N] [--threads N] [--device cpu|cuda] [--sizes MB,MB,...]\n"
               "       [--bucket-mb MB] [--bf16]\n",
               bad);
  return 2;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) {
  using namespace clmae;
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--bf16") {
      args.bf16 = true;
    } else if ((v = next()) == nullptr) {
      return Usage(a.c_str());
    } else if (a == "--preset") {
      args.preset = v;
    } else if (a == "--device") {
      args.device = v;
    } else if (a == "--sizes") {
      args.sizes_mb.clear();
      for (auto part : absl::StrSplit(v, ',')) {
        double mb;
        if (!absl::SimpleAtod(part, &mb) || mb <= 0) return Usage(v);
        args.sizes_mb.push_back(mb);
      }
    } else if (a == "--bucket-mb") {
      if (!absl::SimpleAtod(v, &args.bucket_mb) || args.bucket_mb <= 0) return Usage(v);
    } else {
      int n;
      if (!absl::SimpleAtoi(v, &n) || n < 0) return Usage(v);
      if (a == "--batch")
        args.batch = n;
      else if (a == "--steps")
        args.steps = std::max(n, 1);
      else if (a == "--warmup")
        args.warmup = n;
      else if (a == "--world")
        args.world = std::max(n, 1);
      else if (a == "--threads")
        args.threads = n;
      else
        return Usage(a.c_str());
    }
  }
  auto config = ModelPreset(args.preset);
  if (!config.ok()) {
    std::fprintf(stderr, "clmae-bench-dist: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (args.threads > 0) torch::set_num_threads(args.threads);
  const char* backend = args.device == "cpu" ? "Gloo" : "NCCL";
  std::printf(
      "clmae-bench-dist: %s, %d rank(s) as threads, %d intra-op thread(s) each, device %s\n",
      backend, args.world, torch::get_num_threads(), args.device.c_str());

  std::printf("\ngradient averaging of one flat buffer (copy in, all-reduce, copy back):\n");
  auto bw = MeasureBandwidth(args);
  for (const auto& b : bw) {
    std::printf("  %7.1f MB  %9.2f ms  algbw %6.2f GB/s  busbw %6.2f GB/s\n", b.mb, b.ms, b.algbw,
                b.busbw);
  }

  std::printf("\nCL-MAE iteration, preset %s, batch %d per rank, bucket %.0f MB:\n",
              args.preset.c_str(), args.batch, args.bucket_mb);
  const auto one = MeasureSteps(args, *config, 0, true);
  const auto overlap = MeasureSteps(args, *config, args.world, true);
  const auto serial = MeasureSteps(args, *config, args.world, false);
  auto line = [](const char* name, const StepFigures& f) {
    std::printf("  %-34s %8.1f img/s  step %8.1f ms  comm wait %7.2f ms (%4.1f%% of the step)\n",
                name, f.images_per_second, f.step_ms, f.comm_wait_ms,
                100 * f.comm_wait_ms / f.step_ms);
  };
  line("1 rank (no process group)", one);
  line(absl::StrFormat("%d ranks, buckets overlapped", args.world).c_str(), overlap);
  line(absl::StrFormat("%d ranks, all-reduce after backward", args.world).c_str(), serial);
  const double efficiency = overlap.images_per_second / (args.world * one.images_per_second);
  std::printf("  scaling efficiency %d ranks vs 1: %.1f%% (overlap), %.1f%% (no overlap)\n",
              args.world, 100 * efficiency,
              100 * serial.images_per_second / (args.world * one.images_per_second));

  std::printf(
      "{\"backend\":\"%s\",\"world\":%d,\"preset\":\"%s\",\"batch\":%d,\"one_rank_ips\":%.3f,"
      "\"overlap_ips\":%.3f,\"serial_ips\":%.3f,\"overlap_wait_share\":%.4f,\"serial_wait_share\":%"
      ".4f,"
      "\"scaling_efficiency\":%.4f,\"bandwidth\":[",
      backend, args.world, args.preset.c_str(), args.batch, one.images_per_second,
      overlap.images_per_second, serial.images_per_second, overlap.comm_wait_ms / overlap.step_ms,
      serial.comm_wait_ms / serial.step_ms, efficiency);
  for (size_t i = 0; i < bw.size(); ++i) {
    std::printf("%s{\"mb\":%.1f,\"ms\":%.3f,\"algbw_gbs\":%.3f,\"busbw_gbs\":%.3f}", i ? "," : "",
                bw[i].mb, bw[i].ms, bw[i].algbw, bw[i].busbw);
  }
  std::printf("]}\n");
  return 0;
}

// clmae-bench-engine: times the CL-MAE iteration (and the plain-MAE one) of
// the engine on synthetic batches and prints images/s, peak memory, the
// step-time split and, on CUDA, model-FLOPs utilisation against the bf16
// matrix-product rate measured on the same device in the same run.
//
//   clmae-bench-engine [--preset tiny] [--batch 64] [--steps 20] [--warmup 3]
//                      [--threads 0] [--device cpu|cuda] [--bf16]
//                      [--mode clmae|plain|both] [--check-against-cpu]
//                      [--profile TRACE.json] [--cuda-graphs] [--check-graphs]
//
// --cuda-graphs: time the iteration replayed from a CUDA graph
// (StepOptions::cuda_graphs). --check-graphs (CUDA): graphed runs against an
// eager one, fp32, 20 iterations and across a resume (bench/graph_check.h).
//
// --check-against-cpu (CUDA): one iteration on the device against the CPU on
// the same weights and inputs, then a few queued iterations with CUDA's
// synchronisation debug mode set to error: any host synchronisation on the
// hot path fails the check.
// --profile: after timing, profiles 5 more iterations per mode with Kineto and
// prints where the time goes (bench/step_profile.h); the Chrome trace is
// written to TRACE.json (TRACE-plain.json for plain MAE).
//
// The last line of each mode is a JSON record (for scripts/bench-engine.sh).

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_model.h"
#include "bench/graph_check.h"
#include "bench/step_profile.h"
#include "common/model_config.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/train_step.h"

namespace clmae {
namespace {

struct Args {
  std::string preset = "tiny";
  int batch = 64;
  int steps = 20;
  int warmup = 3;
  int threads = 0;
  std::string device = "cpu";
  bool bf16 = false;
  std::string mode = "both";
  bool check = false;
  std::string profile;  // Chrome trace path; "" = no profile
  bool cuda_graphs = false;
  bool check_graphs = false;
};

int Usage(const char* bad) {
  std::fprintf(
      stderr,
      "clmae-bench-engine: bad argument '%s'\n"
      "usage: clmae-bench-engine [--preset NAME] [--batch N] [--steps N] [--warmup N]\n"
      "       [--threads N] [--device cpu|cuda] [--bf16] [--mode clmae|plain|both]\n"
      "       [--check-against-cpu] [--profile TRACE.json] [--cuda-graphs] [--check-graphs]\n",
      bad);
  return 2;
}

// Multiply-add FLOPs (x2) of a pre-norm block over t tokens of width d.
double BlockFlops(double t, double d, double mlp) {
  return 2 * t * (4 * d * d + 2 * mlp * d * d) + 4 * t * t * d;
}

// Forward FLOPs of the pieces of one image.
struct Flops {
  double embed, encoder_kept, encoder_all, decoder, masker;
};

Flops ForwardFlops(const ModelConfig& c, int64_t len_keep) {
  const double l = c.num_patches(), d = c.embed_dim, dd = c.decoder_embed_dim, pd = c.patch_dim();
  Flops f;
  f.embed = 2 * l * d * pd;
  f.encoder_kept = c.depth * BlockFlops(len_keep + 1, d, c.mlp_ratio);
  f.encoder_all = c.depth * BlockFlops(l + 1, d, c.mlp_ratio);
  f.decoder =
      2 * (l + 1) * d * dd + c.decoder_depth * BlockFlops(l + 1, dd, c.mlp_ratio) + 2 * l * dd * pd;
  f.masker = c.masker_depth * BlockFlops(l + 1, d, c.mlp_ratio) + 2 * d * l;
  return f;
}

// Model FLOPs of one iteration per image: backward = 2x forward for trained
// weights; phase B's frozen backbone costs forward + input-gradient (1x).
double IterationFlops(const ModelConfig& c, int64_t len_keep, bool plain) {
  const auto f = ForwardFlops(c, len_keep);
  double a = 3 * (f.embed + f.encoder_kept + f.decoder) + (plain ? 0 : f.masker);
  if (plain) return a;
  double b = 3 * f.masker + 2 * (f.embed + f.encoder_all + f.decoder);
  return a + b;
}

double MeasureBf16MatmulRate(const torch::Device& device) {
  const int64_t n = 8192;
  auto opts = torch::TensorOptions(device).dtype(torch::kBFloat16);
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  for (int i = 0; i < 3; ++i) a.matmul(b);
  torch::cuda::synchronize();
  const int iters = 20;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) a.matmul(b);
  torch::cuda::synchronize();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * n * n * n * iters / s;
}

long MaxRssBytes() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_maxrss * 1024L;
}

int RunMode(const Args& args, const ModelConfig& config, bool plain, double matmul_rate) {
  const torch::Device device(args.device);
  auto model = BenchModel::Make(config, device, plain, 1e-4);
  StepOptions so;
  so.bf16 = args.bf16;
  so.cuda_graphs = args.cuda_graphs;
  TwoPhaseStep& step = model->Start(so);
  // A fixed pool of host batches; "data" time is the host-to-device copy.
  std::vector<torch::Tensor> pool;
  for (int i = 0; i < 4; ++i) {
    auto t = torch::randn({args.batch, config.in_chans, config.img_size, config.img_size});
    pool.push_back(device.is_cuda() ? t.pin_memory() : t);
  }
  if (device.is_cuda())
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
  // Warm-up steps are read one by one; the timed ones are queued as the
  // trainer queues them, and read once at the end (the only wait for the
  // device). "data" is the host time to queue the host-to-device copy.
  for (int i = 0; i < args.warmup; ++i) {
    auto stats = step.RunAndRead(pool[i % pool.size()].to(device, true), 0.5, i, true);
    if (!stats.ok()) {
      std::fprintf(stderr, "step failed: %s\n", std::string(stats.status().message()).c_str());
      return 1;
    }
  }
  double data = 0, a = 0, b = 0, opt = 0;
  std::vector<PendingStep> pending;
  const auto start = std::chrono::steady_clock::now();
  for (int i = args.warmup; i < args.warmup + args.steps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto imgs = pool[i % pool.size()].to(device, true);
    data += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto queued = step.Run(imgs, 0.5, i, true);
    if (!queued.ok()) {
      std::fprintf(stderr, "step failed: %s\n", std::string(queued.status().message()).c_str());
      return 1;
    }
    pending.push_back(std::move(*queued));
  }
  if (auto finite = step.CheckFinite(); !finite.ok()) {
    std::fprintf(stderr, "step failed: %s\n", std::string(finite.message()).c_str());
    return 1;
  }
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& s : TwoPhaseStep::Read(pending)) {
    a += s.phase_a_seconds;
    b += s.phase_b_seconds;
    opt += s.optimizer_seconds;
  }
  const double ips = args.batch * args.steps / total;
  double peak = static_cast<double>(MaxRssBytes());
  if (device.is_cuda()) {
    auto st =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    peak = static_cast<double>(st.allocated_bytes[0].peak);
  }
  const double flops = IterationFlops(config, step.len_keep(), plain) * ips;
  const char* name = plain ? "plain_mae" : "clmae";
  std::printf(
      "%-9s %8.1f img/s | peak %s %.1f MiB | per step: data %.1f ms, phase A %.1f ms, phase B %.1f "
      "ms, optimizer %.1f ms",
      name, ips, device.is_cuda() ? "device" : "RSS", peak / (1 << 20), 1e3 * data / args.steps,
      1e3 * (a - 0) / args.steps, 1e3 * b / args.steps, 1e3 * opt / args.steps);
  if (matmul_rate > 0)
    std::printf(" | %.1f TFLOP/s model, MFU %.1f%%", flops / 1e12, 100 * flops / matmul_rate);
  if (args.cuda_graphs) {
    const std::string off = step.graphs_off_reason(device);
    std::printf(" | CUDA graphs: %s", off.empty() ? "on" : off.c_str());
  }
  std::printf("\n");
  std::printf(
      "{\"variant\":\"%s\",\"mode\":\"%s\",\"preset\":\"%s\",\"batch\":%d,\"device\":\"%s\","
      "\"bf16\":%s,\"images_per_"
      "second\":%.3f,"
      "\"peak_bytes\":%.0f,\"data_ms\":%.3f,\"phase_a_ms\":%.3f,\"phase_b_ms\":%.3f,\"optimizer_"
      "ms\":%.3f,"
      "\"model_tflops\":%.3f,\"matmul_tflops\":%.3f}\n",
      args.cuda_graphs ? "clmae+graphs" : "clmae", name, args.preset.c_str(), args.batch,
      args.device.c_str(), args.bf16 ? "true" : "false", ips, peak, 1e3 * data / args.steps,
      1e3 * a / args.steps, 1e3 * b / args.steps, 1e3 * opt / args.steps, flops / 1e12,
      matmul_rate / 1e12);
  std::fflush(stdout);
  if (!args.profile.empty()) {
    std::string trace = args.profile;
    if (plain) {
      const auto dot = trace.rfind(".json");
      trace = dot == std::string::npos ? trace + "-plain" : trace.insert(dot, "-plain");
    }
    constexpr int kProfiled = 5;
    std::printf("%s ", name);
    const bool ok = ProfileSplit(device.is_cuda(), kProfiled, trace, [&] {
      for (int i = 0; i < kProfiled; ++i) {
        if (!step.Run(pool[i % pool.size()].to(device, true), 0.5, i, true).ok()) return false;
      }
      return step.CheckFinite().ok();
    });
    if (!ok) return 1;
    std::printf("trace: %s\n", trace.c_str());
    std::fflush(stdout);
  }
  return 0;
}

// A few iterations queued with CUDA's synchronisation debug mode at "error":
// any operation that makes the host wait for the device throws. Returns the
// number of failures (0 or 1) after printing the verdict.
int CheckNoHostSync(const ModelConfig& config, const Args& args, bool plain) {
  const torch::Device device(args.device);
  auto model = BenchModel::Make(config, device, plain, 1e-4);
  StepOptions so;
  so.bf16 = args.bf16;
  so.clip_grad = 1.0;  // the clipping path too
  TwoPhaseStep& step = model->Start(so);
  auto imgs = torch::randn({8, config.in_chans, config.img_size, config.img_size}).pin_memory();
  // The first step allocates the optimizer state and caches; not timed, not checked.
  if (!step.RunAndRead(imgs.to(device, true), 0.5, 0, true).ok()) return 1;
  std::string error;
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  try {
    for (int i = 1; i <= 3 && error.empty(); ++i) {
      auto queued = step.Run(imgs.to(device, true), 0.5, i, /*apply=*/i != 2);
      if (!queued.ok()) error = std::string(queued.status().message());
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  if (error.empty() && !step.CheckFinite().ok()) error = "a non-finite value";
  const auto first_line = error.substr(0, error.find('\n'));
  std::printf("check %s: no host synchronisation in 3 queued iterations %s%s\n",
              plain ? "plain_mae" : "clmae", error.empty() ? "ok" : "FAILED: ", first_line.c_str());
  return error.empty() ? 0 : 1;
}

// Same weights and inputs on CPU (fp32) and on the device: the losses and
// the updated weights of one iteration agree.
int CheckAgainstCpu(const ModelConfig& config, const Args& args) {
  const torch::Device device(args.device);
  auto run = [&](const torch::Device& dev, bool bf16, std::vector<double>& losses) {
    auto model = BenchModel::Make(config, dev, /*plain=*/false, 1e-4);
    StepOptions so;
    so.bf16 = bf16;
    TwoPhaseStep& step = model->Start(so);
    torch::manual_seed(1);
    auto imgs = torch::randn({8, config.in_chans, config.img_size, config.img_size}).to(dev);
    auto s = step.RunAndRead(imgs, 0.5, 0, true);
    if (!s.ok()) return torch::Tensor();
    losses = {s->loss_mae, s->masker_total, s->masker_rec, s->masker_kl, s->masker_div};
    return model->mae->patch_embed->proj->weight.detach().to(torch::kCPU);
  };
  std::vector<double> cpu, dev, dev16;
  auto w_cpu = run(torch::kCPU, false, cpu);
  auto w_dev = run(device, false, dev);
  auto w_dev16 = args.bf16 ? run(device, true, dev16) : torch::Tensor();
  int failures = 0;
  const char* names[] = {"loss_mae", "masker_total", "masker_rec", "masker_kl", "masker_div"};
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double rel = std::abs(cpu[i] - dev[i]) / std::max(1e-6, std::abs(cpu[i]));
    const bool ok = rel < 1e-3;
    failures += !ok;
    std::printf("check fp32 %-12s cpu %.6f %s %.6f rel %.2e %s\n", names[i], cpu[i],
                args.device.c_str(), dev[i], rel, ok ? "ok" : "MISMATCH");
    if (!dev16.empty()) {
      const double rel16 = std::abs(cpu[i] - dev16[i]) / std::max(1e-6, std::abs(cpu[i]));
      std::printf("check bf16 %-12s cpu %.6f %s %.6f rel %.2e %s\n", names[i], cpu[i],
                  args.device.c_str(), dev16[i], rel16, rel16 < 5e-2 ? "ok" : "MISMATCH");
      failures += rel16 >= 5e-2;
    }
  }
  const double wdiff = (w_cpu - w_dev).abs().max().item<double>();
  std::printf("check fp32 updated patch_embed weight max |cpu - %s| = %.2e %s\n",
              args.device.c_str(), wdiff, wdiff < 1e-5 ? "ok" : "MISMATCH");
  failures += wdiff >= 1e-5;
  failures += CheckNoHostSync(config, args, /*plain=*/false);
  failures += CheckNoHostSync(config, args, /*plain=*/true);
  std::printf("check %s\n", failures == 0 ? "PASSED" : "FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) {
  clmae::Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--bf16") {
      args.bf16 = true;
    } else if (a == "--check-against-cpu") {
      args.check = true;
    } else if (a == "--cuda-graphs") {
      args.cuda_graphs = true;
    } else if (a == "--check-graphs") {
      args.check_graphs = true;
    } else if ((a == "--preset" || a == "--device" || a == "--mode" || a == "--profile") &&
               (v = next())) {
      (a == "--preset"   ? args.preset
       : a == "--device" ? args.device
       : a == "--mode"   ? args.mode
                         : args.profile) = v;
    } else if ((a == "--batch" || a == "--steps" || a == "--warmup" || a == "--threads") &&
               (v = next())) {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (*end != '\0' || n < 0 || n > 1000000) return clmae::Usage(argv[i]);
      (a == "--batch"    ? args.batch
       : a == "--steps"  ? args.steps
       : a == "--warmup" ? args.warmup
                         : args.threads) = static_cast<int>(n);
    } else {
      return clmae::Usage(argv[i]);
    }
  }
  if (args.batch < 1 || args.steps < 1) return clmae::Usage("--batch/--steps must be >= 1");
  if (args.mode != "clmae" && args.mode != "plain" && args.mode != "both")
    return clmae::Usage(args.mode.c_str());
  auto config = clmae::ModelPreset(args.preset);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (args.threads > 0) torch::set_num_threads(args.threads);
  const torch::Device device(args.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "--device %s: no CUDA device available\n", args.device.c_str());
    return 2;
  }
  if (args.bf16 && !device.is_cuda()) return clmae::Usage("--bf16 needs --device cuda");
  std::printf(
      "clmae engine benchmark: preset %s, batch %d, %d steps (+%d warm-up), device %s%s, %d "
      "threads\n",
      args.preset.c_str(), args.batch, args.steps, args.warmup, args.device.c_str(),
      args.bf16 ? " bf16" : "", torch::get_num_threads());
  if (args.check) {
    if (!device.is_cuda()) return clmae::Usage("--check-against-cpu needs --device cuda");
    if (int rc = clmae::CheckAgainstCpu(*config, args); rc != 0) return rc;
  }
  if (args.check_graphs) {
    if (!device.is_cuda()) return clmae::Usage("--check-graphs needs --device cuda");
    const char* tmp = std::getenv("TMPDIR");
    if (clmae::CheckGraphsAgainstEager(*config, args.device, tmp != nullptr ? tmp : "/tmp") != 0) {
      return 1;
    }
  }
  const double rate = device.is_cuda() ? clmae::MeasureBf16MatmulRate(device) : 0;
  if (rate > 0) std::printf("bf16 matmul (8192^3) on this device: %.1f TFLOP/s\n", rate / 1e12);
  if (args.mode != "plain" && clmae::RunMode(args, *config, false, rate) != 0) return 1;
  if (args.mode != "clmae" && clmae::RunMode(args, *config, true, rate) != 0) return 1;
  return 0;
}

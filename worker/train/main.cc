// clmae-train: trains one CL-MAE (or plain MAE) job from a YAML job spec.
//
//   clmae-train --config examples/tiny-fashion-mnist.yaml [--resume auto]
//
// Exit codes: 0 done, 1 training failed, 2 bad command line or spec.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "services/job_spec_yaml.h"
#include "worker/engine/train/trainer.h"
#include "worker/train/console_reporter.h"
#include "worker/train/trainer_options_from_spec.h"

ABSL_FLAG(std::string, config, "", "YAML job spec (see examples/)");
ABSL_FLAG(std::string, resume, "",
          "checkpoint to resume from, or 'auto' for the newest in the output folder");
ABSL_FLAG(std::string, init_from, "",
          "safetensors file (reference key names) to initialise the networks from; "
          "overrides train.init_from");
ABSL_FLAG(std::string, output_dir, "", "output folder; overrides output.dir");
ABSL_FLAG(std::string, device, "", "cpu, cuda or cuda:N; overrides train.device");
ABSL_FLAG(int64_t, max_steps, -1, "stop after this many iterations; overrides train.max_steps");

namespace {

// Accepts --output-dir as well as Abseil's --output_dir spelling.
std::vector<char*> NormaliseFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  std::vector<char*> out;
  for (auto& arg : storage) {
    if (arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    out.push_back(arg.data());
  }
  return out;
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "clmae-train: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a CL-MAE job on this machine.\n  clmae-train --config job.yaml [--resume auto]");
  std::vector<std::string> storage;
  auto args = NormaliseFlagNames(argc, argv, storage);
  auto rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (rest.size() > 1) return Fail(2, absl::StrCat("unexpected argument '", rest[1], "'; see --help"));
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) return Fail(2, "--config is required (a YAML job spec; see examples/)");

  auto spec = clmae::LoadJobSpecFile(config);
  if (!spec.ok()) return Fail(2, std::string(spec.status().message()));
  if (!absl::GetFlag(FLAGS_device).empty()) spec->mutable_train()->set_device(absl::GetFlag(FLAGS_device));
  if (!absl::GetFlag(FLAGS_output_dir).empty()) spec->mutable_output()->set_dir(absl::GetFlag(FLAGS_output_dir));
  if (!absl::GetFlag(FLAGS_init_from).empty()) spec->mutable_train()->set_init_from(absl::GetFlag(FLAGS_init_from));
  if (absl::GetFlag(FLAGS_max_steps) >= 0) spec->mutable_train()->set_max_steps(absl::GetFlag(FLAGS_max_steps));

  auto options = clmae::TrainerOptionsFromSpec(*spec);
  if (!options.ok()) return Fail(2, absl::StrCat(config, ": ", options.status().message()));
  options->resume_from = absl::GetFlag(FLAGS_resume);

  clmae::ConsoleReporter reporter;
  auto trainer = clmae::Trainer::Create(*options, nullptr, &reporter);
  if (!trainer.ok()) {
    const bool bad_input = absl::IsInvalidArgument(trainer.status()) || absl::IsNotFound(trainer.status());
    return Fail(bad_input ? 2 : 1, std::string(trainer.status().message()));
  }
  if (auto status = (*trainer)->Run(); !status.ok()) return Fail(1, std::string(status.message()));
  std::printf("done: %s\n", options->output_dir.c_str());
  return 0;
}

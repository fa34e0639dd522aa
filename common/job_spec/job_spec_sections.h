#pragma once

// The section checks behind ValidateJobSpec (job_spec_validator.h), one per
// part of the spec, each returning OK or the first INVALID_ARGUMENT found.
// Unset fields take their defaults (job_spec_defaults.h). Internal to
// services/: callers use ValidateJobSpec.

#include "absl/status/status.h"
#include "clmae/v1/job_spec.pb.h"
#include "common/model_config.h"

namespace clmae::job_spec_internal {

// The resolved model: ValidateModelConfig plus sanity limits on its size.
absl::Status CheckModel(const ModelConfig& model);
// Mode, mask ratio (against the model's patch count) and loss weights.
absl::Status CheckMasking(const v1::MaskingSpec& masking, const ModelConfig& model);
absl::Status CheckCurriculum(const v1::CurriculumSpec& curriculum);
// Reads train.* and resources.* for warm-up and the peak learning rate.
absl::Status CheckOptimizer(const v1::JobSpec& spec);

// Kind, path, channels (against the model), transform and loader settings.
absl::Status CheckData(const v1::DataSpec& data, const ModelConfig& model);
absl::Status CheckTrain(const v1::TrainSpec& train);
// data.decode GPU needs image files and a CUDA train.device.
absl::Status CheckDecode(const v1::DataSpec& data, const v1::TrainSpec& train);
absl::Status CheckEval(const v1::JobSpec& spec, const ModelConfig& model);
absl::Status CheckOutput(const v1::OutputSpec& output);
absl::Status CheckResources(const v1::JobSpec& spec);

}  // namespace clmae::job_spec_internal

#pragma once

// Field-by-field validation of a job spec, for the coordinator (on submit)
// and clmae-train (on start). Torch-free. Thread-safe (pure functions).

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clmae/v1/job_spec.pb.h"
#include "common/model_config.h"

namespace clmae {

// The model a spec asks for: `model.preset` (default "tiny") with every set
// override applied. INVALID_ARGUMENT names an unknown preset and lists the
// known ones. The result is not validated; ValidateJobSpec does that.
absl::StatusOr<ModelConfig> ResolveModelConfig(const clmae::v1::JobSpec& spec);

// Checks every field of `spec`, with unset fields taking their defaults
// (job_spec_defaults.h), and the rules between fields (the resolved model
// passes ValidateModelConfig, the mask ratio keeps at least one patch, warm-up
// is shorter than training, BF16 needs CUDA, mean/std match the channels...).
// Returns OK or INVALID_ARGUMENT for the first problem found; the message
// starts with the field's YAML path (e.g. "masking.mask_ratio") and says what
// was given and what is allowed. Does not touch the file system: whether
// data paths exist is checked where the data is read.
absl::Status ValidateJobSpec(const clmae::v1::JobSpec& spec);

// A path inside a folder: relative, with no ".." component (so it cannot
// leave the folder it is joined to). INVALID_ARGUMENT names `field` and says
// what was given. Empty is allowed (the default).
absl::Status CheckInsideFolder(absl::string_view field, absl::string_view path);

// ValidateJobSpec plus what a job run by the service must also respect, on
// submit: a worker writes a job's outputs under the job's own folder in its
// work directory, so output.dir must stay inside it (CheckInsideFolder).
// Paths read on the workers (data.path, eval.path, train.init_from) are
// checked by each worker against the roots its operator allows.
absl::Status ValidateJobSpecForService(const clmae::v1::JobSpec& spec);

}  // namespace clmae

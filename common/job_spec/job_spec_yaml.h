#pragma once

// Job specs as YAML: what clmae-train reads from disk and clmaectl submits.
// The YAML keys are the field names of clmae.v1.JobSpec
// (proto/clmae/v1/job_spec.proto); see examples/ for complete specs.
// These functions check syntax and types only; ranges and cross-field rules
// are ValidateJobSpec's (job_spec_validator.h). Thread-safe.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "clmae/v1/job_spec.pb.h"

namespace clmae {

// The largest job spec accepted, in bytes; a spec is a page of settings, so
// anything bigger is a mistake (or an attack on the coordinator).
inline constexpr size_t kMaxJobSpecBytes = 1 << 20;

// Parses a YAML job spec. Enum values are written by name in any letter case
// (`mode: plain_mae`); see MessageFromYaml (proto_yaml.h) for how each
// scalar is read. INVALID_ARGUMENT names the field path and the YAML line and
// column: an unknown key (with the closest known name), a value of the wrong
// type, a syntax error, or a spec over kMaxJobSpecBytes.
absl::StatusOr<clmae::v1::JobSpec> JobSpecFromYaml(std::string_view yaml_text);

// Reads and parses the YAML job spec at `path`. NOT_FOUND names a missing
// file; other I/O failures carry the errno's code; parse errors are
// JobSpecFromYaml's, prefixed with the path.
absl::StatusOr<clmae::v1::JobSpec> LoadJobSpecFile(const std::string& path);

// Writes `spec` as YAML that JobSpecFromYaml reads back to an equal spec.
// Only fields that are set appear.
std::string JobSpecToYaml(const clmae::v1::JobSpec& spec);

}  // namespace clmae

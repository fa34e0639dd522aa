#include "common/job_spec/job_spec_yaml.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/job_spec/proto_yaml.h"
#include "common/status_macros.h"

namespace clmae {

absl::StatusOr<v1::JobSpec> JobSpecFromYaml(std::string_view yaml_text) {
  if (yaml_text.size() > kMaxJobSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job spec is ", yaml_text.size(), " bytes; at most ", kMaxJobSpecBytes, " are allowed"));
  }
  v1::JobSpec spec;
  RETURN_IF_ERROR(MessageFromYaml(yaml_text, &spec));
  return spec;
}

absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat("job spec file '", path, "' not found"));
  }
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot open job spec file '", path, "': ", ec.message()));
  }
  if (status.type() == std::filesystem::file_type::directory) {
    return absl::InvalidArgumentError(absl::StrCat("job spec file '", path, "' is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    return absl::Status(
        error != 0 ? absl::ErrnoToStatusCode(error) : absl::StatusCode::kUnknown,
        absl::StrCat("cannot open job spec file '", path, "': ", std::strerror(error)));
  }
  // Read one byte past the limit to tell "at the limit" from "over it".
  std::string text(kMaxJobSpecBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read job spec file '", path, "'"));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  auto spec = JobSpecFromYaml(text);
  if (!spec.ok()) {
    return absl::Status(spec.status().code(), absl::StrCat(path, ": ", spec.status().message()));
  }
  return spec;
}

std::string JobSpecToYaml(const v1::JobSpec& spec) { return MessageToYaml(spec); }

}  // namespace clmae

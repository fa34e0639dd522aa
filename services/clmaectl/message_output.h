#pragma once

// `-o json` and `-o yaml` for any result message.

#include <ostream>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "services/clmaectl/ctl_options.h"

namespace clmae::ctl {

// Writes `message` as JSON (proto field names, indented; one line when
// `one_line`) or as a YAML document (common/job_spec/proto_yaml.h; a leading "---"
// when `one_line`, so a stream of them stays a valid YAML stream). INTERNAL
// when the JSON printer fails. `format` must not be kTable.
absl::Status PrintMessage(const google::protobuf::Message& message, OutputFormat format,
                          std::ostream& out, bool one_line = false);

}  // namespace clmae::ctl

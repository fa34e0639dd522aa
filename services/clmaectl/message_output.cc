#include "services/clmaectl/message_output.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/job_spec/proto_yaml.h"
#include "google/protobuf/util/json_util.h"

namespace clmae::ctl {

absl::Status PrintMessage(const google::protobuf::Message& message, OutputFormat format,
                          std::ostream& out, bool one_line) {
  if (format == OutputFormat::kYaml) {
    if (one_line) out << "---\n";
    out << MessageToYaml(message);
    return absl::OkStatus();
  }
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = !one_line;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print ", message.GetTypeName(), " as JSON: ", status.ToString()));
  }
  out << json;
  if (json.empty() || json.back() != '\n') out << '\n';
  return absl::OkStatus();
}

}  // namespace clmae::ctl

// libFuzzer target: the job-spec YAML reader (JobSpecFromYaml), which the
// coordinator runs on every submission. Whatever it accepts must survive a
// round trip through JobSpecToYaml unchanged, and the validator must answer
// without crashing.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = clmae::JobSpecFromYaml(text);
  if (!spec.ok()) return 0;
  (void)clmae::ValidateJobSpec(*spec);
  const std::string yaml = clmae::JobSpecToYaml(*spec);
  auto again = clmae::JobSpecFromYaml(yaml);
  // NaN is a number to the reader (the validator refuses it) and equals itself
  // here.
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  if (!again.ok() || !differencer.Compare(*spec, *again)) {
    std::fprintf(stderr, "round trip failed: %s\n--- written ---\n%s\n",
                 again.ok() ? "specs differ" : std::string(again.status().message()).c_str(),
                 yaml.c_str());
    std::abort();
  }
  return 0;
}

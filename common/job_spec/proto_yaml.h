#pragma once

// YAML <-> protobuf messages, for the human-written documents of the project
// (job specs). The YAML keys are the proto field names. Reading is guided by
// the message's descriptor, so a mistake is reported at its YAML position with
// its field path; the converted tree then goes through protobuf's JSON parser
// (unknown fields rejected), so every proto3 JSON rule still holds.

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace clmae {

// Replaces `*message` with the message that the YAML document `yaml_text`
// describes. Scalars are read as the field's type:
// - strings: any scalar, quoted or not (`name: 2024` is the string "2024");
// - integers and floating point: unquoted numbers (`.inf`/`.nan` too), in the
//   field's range; a quoted number stays a string and is rejected;
// - booleans: unquoted true/false (also yes/no/on/off), any letter case;
// - enums: the value's name, any letter case, `-` for `_` (`plain-mae`);
// - repeated fields: a sequence; maps: a mapping of scalars; messages: a
//   mapping.
// A null value (`~`, `null`, nothing) leaves the field unset. An empty
// document is the empty message.
// Errors are INVALID_ARGUMENT and begin with the field's path and YAML
// position, e.g. "model.patch_sise (line 3, column 3): unknown field; did you
// mean patch_size?"; a syntax error gives the line and column. Duplicate keys
// and documents after the first are errors, never silently dropped.
absl::Status MessageFromYaml(std::string_view yaml_text, google::protobuf::Message* message);

// Writes `message` as a block-style YAML document that MessageFromYaml reads
// back to an equal message: only fields that are set appear, in declaration
// order; enums by name; doubles in the shortest form that reads back exactly;
// map entries sorted by key; strings quoted where YAML would read them as
// something else.
std::string MessageToYaml(const google::protobuf::Message& message);

}  // namespace clmae

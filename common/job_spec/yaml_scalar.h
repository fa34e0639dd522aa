#pragma once

// How this project reads and writes plain (unquoted) YAML scalars: the YAML
// 1.2 core schema's null, booleans and numbers, plus YAML 1.1's yes/no/on/off
// booleans. Shared by the reader and the writer of proto_yaml.h so that what
// one writes the other reads back. Thread-safe (pure functions).

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace clmae {

// A decimal integer with an optional sign ("42", "-3", "+7"); nullopt for
// anything else, including a value outside int64 / uint64.
std::optional<int64_t> ParseYamlInt64(absl::string_view text);
std::optional<uint64_t> ParseYamlUint64(absl::string_view text);

// A number ("0.75", "1e-3", "-2", ".5") or .inf / -.inf / .nan in any of
// YAML's spellings; nullopt for anything else.
std::optional<double> ParseYamlDouble(absl::string_view text);

// true/false/yes/no/on/off in any letter case; nullopt for anything else.
std::optional<bool> ParseYamlBool(absl::string_view text);

// "~", "null", "Null", "NULL" or the empty string.
bool IsYamlNull(absl::string_view text);

// The shortest text that ParseYamlDouble reads back to exactly `value`, with
// a '.' in the mantissa ("1.0", "0.00015", "1.0e-20", "-.inf", ".nan").
std::string FormatYamlDouble(double value);

// Whether `text`, written unquoted, would be read as something other than
// this string (null, a boolean, a number) or lose surrounding white space.
bool NeedsYamlQuotes(absl::string_view text);

}  // namespace clmae

#pragma once

// A small JSON reader for the files the engine reads itself (the header of a
// safetensors file), and string escaping for the JSON it writes.

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

struct JsonValue {
  using Object = std::map<std::string, JsonValue>;
  using Array = std::vector<JsonValue>;
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> value;

  bool is_object() const { return std::holds_alternative<Object>(value); }
  bool is_array() const { return std::holds_alternative<Array>(value); }
  bool is_string() const { return std::holds_alternative<std::string>(value); }
  bool is_number() const { return std::holds_alternative<double>(value); }
  const Object& object() const { return std::get<Object>(value); }
  const Array& array() const { return std::get<Array>(value); }
  const std::string& string() const { return std::get<std::string>(value); }
  double number() const { return std::get<double>(value); }
};

// Parses one JSON document (RFC 8259; \u escapes outside ASCII become UTF-8).
// INVALID_ARGUMENT gives the byte offset of the problem. Nesting is limited
// to 64 levels.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

// `s` as a quoted JSON string.
std::string JsonQuote(absl::string_view s);

}  // namespace clmae

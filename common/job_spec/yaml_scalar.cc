#include "common/job_spec/yaml_scalar.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace clmae {
namespace {

// from_chars rejects a leading '+', which YAML allows.
absl::string_view StripPlus(absl::string_view text) {
  if (text.size() > 1 && text[0] == '+' && text[1] != '-' && text[1] != '+') {
    text.remove_prefix(1);
  }
  return text;
}

template <typename T>
std::optional<T> ParseInteger(absl::string_view text) {
  text = StripPlus(text);
  if (text.empty()) return std::nullopt;
  T value{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, 10);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<int64_t> ParseYamlInt64(absl::string_view text) {
  return ParseInteger<int64_t>(text);
}

std::optional<uint64_t> ParseYamlUint64(absl::string_view text) {
  return ParseInteger<uint64_t>(text);
}

std::optional<double> ParseYamlDouble(absl::string_view text) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (absl::string_view inf : {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}) {
    if (text == inf) return kInf;
  }
  for (absl::string_view inf : {"-.inf", "-.Inf", "-.INF"}) {
    if (text == inf) return -kInf;
  }
  for (absl::string_view nan : {".nan", ".NaN", ".NAN"}) {
    if (text == nan) return std::numeric_limits<double>::quiet_NaN();
  }
  text = StripPlus(text);
  // from_chars would also take "inf", "nan" and hex floats; YAML numbers
  // start with a digit, a sign or a point and hold only these characters.
  bool has_digit = false;
  for (char c : text) {
    if (IsDigit(c)) {
      has_digit = true;
    } else if (c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E') {
      return std::nullopt;
    }
  }
  if (!has_digit) return std::nullopt;
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, std::chars_format::general);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

std::optional<bool> ParseYamlBool(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "no" || lower == "off") return false;
  return std::nullopt;
}

bool IsYamlNull(absl::string_view text) {
  return text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL";
}

std::string FormatYamlDouble(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  // Positional notation where it stays short ("0.0001", "250.0"), else
  // scientific; always with a '.' in the mantissa, which YAML 1.1 readers
  // (PyYAML) need to see a number rather than a string.
  const double magnitude = std::fabs(value);
  const bool positional = magnitude == 0 || (magnitude >= 1e-5 && magnitude < 1e16);
  char buffer[64];
  auto [end, ec] =
      std::to_chars(buffer, buffer + sizeof(buffer), value,
                    positional ? std::chars_format::fixed : std::chars_format::scientific);
  std::string text(buffer, end);
  const size_t exponent = text.find('e');
  const size_t mantissa_end = exponent == std::string::npos ? text.size() : exponent;
  if (text.substr(0, mantissa_end).find('.') == std::string::npos) {
    text.insert(mantissa_end, ".0");
  }
  return text;
}

bool NeedsYamlQuotes(absl::string_view text) {
  if (IsYamlNull(text) || ParseYamlBool(text).has_value() || ParseYamlDouble(text).has_value()) {
    return true;
  }
  return absl::ascii_isspace(static_cast<unsigned char>(text.front())) ||
         absl::ascii_isspace(static_cast<unsigned char>(text.back()));
}

}  // namespace clmae

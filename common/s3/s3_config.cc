#include "common/s3/s3_config.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_io.h"

namespace clmae {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("S3 storage: ", field, " ", why));
}

absl::string_view AfterScheme(absl::string_view endpoint) {
  const size_t at = endpoint.find("://");
  return at == absl::string_view::npos ? endpoint : endpoint.substr(at + 3);
}

}  // namespace

std::string S3EndpointHost(const S3Config& config) {
  return std::string(absl::StripSuffix(AfterScheme(config.endpoint), "/"));
}

std::string S3EndpointScheme(const S3Config& config) {
  return absl::StartsWith(config.endpoint, "https://") ? "https" : "http";
}

absl::Status ValidateS3Config(const S3Config& c) {
  if (!absl::StartsWith(c.endpoint, "http://") && !absl::StartsWith(c.endpoint, "https://")) {
    return Bad("endpoint", absl::StrCat("\"", c.endpoint,
                                        "\" must start with http:// or https:// (e.g. "
                                        "https://s3.us-east-1.amazonaws.com)"));
  }
  const std::string host = S3EndpointHost(c);
  if (host.empty() || absl::StrContains(host, "/") || absl::StrContains(host, "?")) {
    return Bad("endpoint", absl::StrCat("\"", c.endpoint, "\" must be scheme://host[:port] only"));
  }
  if (c.bucket.size() < 3 || c.bucket.size() > 63) {
    return Bad("bucket", absl::StrCat("\"", c.bucket, "\" must have 3 to 63 characters"));
  }
  for (char ch : c.bucket) {
    if (!(absl::ascii_islower(ch) || absl::ascii_isdigit(ch) || ch == '.' || ch == '-')) {
      return Bad("bucket", absl::StrCat("\"", c.bucket,
                                        "\" may hold only lowercase letters, digits, '.' and '-'"));
    }
  }
  if (absl::StartsWith(c.prefix, "/")) {
    return Bad("prefix", absl::StrCat("\"", c.prefix, "\" must not start with '/'"));
  }
  for (char ch : c.prefix) {
    if (!(absl::ascii_isalnum(ch) || ch == '/' || ch == '_' || ch == '.' || ch == '-')) {
      return Bad("prefix",
                 absl::StrCat("\"", c.prefix, "\" may hold only letters, digits and \"/_.-\""));
    }
  }
  if (c.region.empty()) return Bad("region", "is empty (us-east-1 suits most other stores)");
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return Bad("credentials",
               "are missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a "
               "credentials file");
  }
  return absl::OkStatus();
}

absl::Status LoadS3Credentials(const std::string& credentials_file, S3Config& config) {
  if (credentials_file.empty()) {
    const auto env = [](const char* name) {
      const char* value = std::getenv(name);
      return value == nullptr ? std::string() : std::string(value);
    };
    config.access_key_id = env("AWS_ACCESS_KEY_ID");
    config.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
    config.session_token = env("AWS_SESSION_TOKEN");
    if (config.access_key_id.empty() || config.secret_access_key.empty()) {
      return Bad("credentials",
                 "are missing: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set in "
                 "the environment, and no credentials file was given");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> text = ReadFile(credentials_file);
  if (!text.ok()) return text.status();
  config.access_key_id.clear();
  config.secret_access_key.clear();
  config.session_token.clear();
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#' || line.front() == '[') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return Bad("credentials file", absl::StrCat(credentials_file,
                                                  ": a line is not \"name = value\" (the "
                                                  "lines are not quoted here: they hold secrets)"));
    }
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, eq)));
    const std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (name == "aws_access_key_id") config.access_key_id = value;
    if (name == "aws_secret_access_key") config.secret_access_key = value;
    if (name == "aws_session_token") config.session_token = value;
  }
  if (config.access_key_id.empty() || config.secret_access_key.empty()) {
    return Bad("credentials file",
               absl::StrCat(credentials_file, " lacks aws_access_key_id or aws_secret_access_key"));
  }
  return absl::OkStatus();
}

}  // namespace clmae

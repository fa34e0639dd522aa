#include "common/s3/s3_client.h"

#include <openssl/evp.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/s3/sigv4_presign.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

constexpr absl::string_view kMetaPrefix = "x-amz-meta-";

std::string Unquote(absl::string_view etag) {
  etag = absl::StripPrefix(etag, "\"");
  etag = absl::StripSuffix(etag, "\"");
  return std::string(etag);
}

absl::Time ParseIsoTime(const std::string& text) {
  absl::Time t;
  std::string error;
  if (absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", text, &t, &error)) return t;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return t;
  return absl::InfinitePast();
}

std::string Describe(absl::string_view method, absl::string_view key) {
  return absl::StrCat("S3 ", method, " ", key);
}

}  // namespace

Md5::Md5() : context_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(context_), EVP_md5(), nullptr);
}
Md5::~Md5() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context_)); }
void Md5::Update(absl::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context_), bytes.data(), bytes.size());
}
std::string Md5::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  auto* ctx = static_cast<EVP_MD_CTX*>(context_);
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string Md5Hex(absl::string_view bytes) {
  Md5 md5;
  md5.Update(bytes);
  return md5.HexDigest();
}

std::string MultipartEtag(const std::vector<std::string>& part_md5_hex) {
  std::string binary;
  for (const std::string& hex : part_md5_hex) binary += absl::HexStringToBytes(hex);
  return absl::StrCat(Md5Hex(binary), "-", part_md5_hex.size());
}

absl::StatusOr<std::unique_ptr<S3Client>> S3Client::Create(S3Config config,
                                                           absl::Duration stall_timeout) {
  RETURN_IF_ERROR(ValidateS3Config(config));
  return std::unique_ptr<S3Client>(new S3Client(std::move(config), stall_timeout));
}

std::string S3Client::Url(const std::string& key, const std::string& query) const {
  std::string url =
      absl::StrCat(S3EndpointScheme(config_), "://", S3EndpointHost(config_), "/", config_.bucket);
  if (!key.empty()) absl::StrAppend(&url, "/", AwsUriEncode(key, /*keep_slashes=*/true));
  if (!query.empty()) absl::StrAppend(&url, "?", query);
  return url;
}

HttpRequest S3Client::Signed(const std::string& method, const std::string& key,
                             const std::string& query) const {
  HttpRequest request;
  request.method = method;
  request.url = Url(key, query);
  request.aws_sigv4 = absl::StrCat("aws:amz:", config_.region, ":s3");
  request.user = absl::StrCat(config_.access_key_id, ":", config_.secret_access_key);
  if (!config_.session_token.empty()) {
    request.headers.emplace_back("x-amz-security-token", config_.session_token);
  }
  request.stall_timeout = stall_timeout_;
  return request;
}

absl::Status S3Client::CreateBucket() {
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("PUT", "", "")));
  if (response.status / 100 == 2) return absl::OkStatus();
  const std::string code = XmlField(response.body, "Code");
  if (code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists") return absl::OkStatus();
  return HttpError(absl::StrCat("S3 create bucket ", config_.bucket), response);
}

absl::StatusOr<S3ObjectInfo> S3Client::Head(const std::string& key) {
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("HEAD", key, "")));
  if (response.status / 100 != 2) return HttpError(Describe("HEAD", key), response);
  S3ObjectInfo info;
  info.key = key;
  const auto length = response.headers.find("content-length");
  if (length == response.headers.end() || !absl::SimpleAtoi(length->second, &info.size)) {
    return absl::UnknownError(absl::StrCat(Describe("HEAD", key), ": no Content-Length"));
  }
  info.etag = Unquote(response.headers["etag"]);
  absl::Time modified;
  std::string error;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", response.headers["last-modified"], &modified,
                      &error)) {
    info.last_modified = modified;
  }
  for (const auto& [name, value] : response.headers) {
    if (absl::StartsWith(name, kMetaPrefix)) info.metadata[name.substr(kMetaPrefix.size())] = value;
  }
  return info;
}

absl::Status S3Client::Delete(const std::string& key) {
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("DELETE", key, "")));
  if (response.status / 100 == 2 || response.status == 404) return absl::OkStatus();
  return HttpError(Describe("DELETE", key), response);
}

absl::StatusOr<std::vector<S3ObjectInfo>> S3Client::List(const std::string& prefix) {
  std::vector<S3ObjectInfo> out;
  std::string token;
  while (true) {
    std::string query = "list-type=2";
    if (!token.empty()) absl::StrAppend(&query, "&continuation-token=", AwsUriEncode(token, false));
    absl::StrAppend(&query, "&prefix=", AwsUriEncode(prefix, false));
    ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("GET", "", query)));
    if (response.status / 100 != 2) return HttpError(Describe("LIST", prefix), response);
    for (const std::string& item : XmlElements(response.body, "Contents")) {
      S3ObjectInfo info;
      info.key = XmlField(item, "Key");
      if (!absl::SimpleAtoi(XmlField(item, "Size"), &info.size)) info.size = -1;
      info.etag = Unquote(XmlField(item, "ETag"));
      info.last_modified = ParseIsoTime(XmlField(item, "LastModified"));
      out.push_back(std::move(info));
    }
    if (XmlField(response.body, "IsTruncated") != "true") break;
    token = XmlField(response.body, "NextContinuationToken");
    if (token.empty()) break;
  }
  return out;
}

absl::Status S3Client::Put(const std::string& key, const std::string& bytes,
                           const std::map<std::string, std::string>& metadata) {
  HttpRequest request = Signed("PUT", key, "");
  request.body = bytes;
  for (const auto& [name, value] : metadata) {
    request.headers.emplace_back(absl::StrCat(kMetaPrefix, name), value);
  }
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(request));
  if (response.status / 100 != 2) return HttpError(Describe("PUT", key), response);
  return absl::OkStatus();
}

absl::StatusOr<std::string> S3Client::Get(const std::string& key) {
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("GET", key, "")));
  if (response.status / 100 != 2) return HttpError(Describe("GET", key), response);
  return std::move(response.body);
}

absl::StatusOr<std::string> S3Client::CreateMultipartUpload(
    const std::string& key, const std::map<std::string, std::string>& metadata) {
  HttpRequest request = Signed("POST", key, "uploads=");
  for (const auto& [name, value] : metadata) {
    request.headers.emplace_back(absl::StrCat(kMetaPrefix, name), value);
  }
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(request));
  if (response.status / 100 != 2) {
    return HttpError(Describe("create multipart upload", key), response);
  }
  std::string id = XmlField(response.body, "UploadId");
  if (id.empty()) {
    return absl::UnknownError(
        absl::StrCat(Describe("create multipart upload", key), ": the reply has no UploadId"));
  }
  return id;
}

absl::StatusOr<std::string> S3Client::CompleteMultipartUpload(
    const std::string& key, const std::string& upload_id,
    const std::vector<S3CompletedPart>& parts) {
  std::string xml = "<CompleteMultipartUpload>";
  for (const S3CompletedPart& part : parts) {
    absl::StrAppend(&xml, "<Part><PartNumber>", part.part_number, "</PartNumber><ETag>\"",
                    part.etag, "\"</ETag></Part>");
  }
  xml += "</CompleteMultipartUpload>";
  HttpRequest request =
      Signed("POST", key, absl::StrCat("uploadId=", AwsUriEncode(upload_id, false)));
  request.body = std::move(xml);
  request.headers.emplace_back("Content-Type", "application/xml");
  ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(request));
  // S3 may answer 200 with an error document (a failure late in the work).
  if (response.status / 100 != 2 || !XmlField(response.body, "Code").empty()) {
    if (response.status / 100 == 2) response.status = 500;
    return HttpError(Describe("complete multipart upload", key), response);
  }
  return Unquote(XmlField(response.body, "ETag"));
}

absl::Status S3Client::AbortMultipartUpload(const std::string& key, const std::string& upload_id) {
  ASSIGN_OR_RETURN(HttpResponse response,
                   PerformHttp(Signed("DELETE", key,
                                      absl::StrCat("uploadId=", AwsUriEncode(upload_id, false)))));
  if (response.status / 100 == 2 || response.status == 404) return absl::OkStatus();
  return HttpError(Describe("abort multipart upload", key), response);
}

absl::StatusOr<std::vector<S3MultipartInfo>> S3Client::ListMultipartUploads(
    const std::string& prefix) {
  std::vector<S3MultipartInfo> out;
  std::string key_marker, id_marker;
  while (true) {
    std::string query;
    if (!key_marker.empty()) {
      absl::StrAppend(&query, "key-marker=", AwsUriEncode(key_marker, false), "&");
    }
    absl::StrAppend(&query, "prefix=", AwsUriEncode(prefix, false));
    if (!id_marker.empty()) {
      absl::StrAppend(&query, "&upload-id-marker=", AwsUriEncode(id_marker, false));
    }
    absl::StrAppend(&query, "&uploads=");
    ASSIGN_OR_RETURN(HttpResponse response, PerformHttp(Signed("GET", "", query)));
    if (response.status / 100 != 2) {
      return HttpError(Describe("list multipart uploads", prefix), response);
    }
    for (const std::string& item : XmlElements(response.body, "Upload")) {
      out.push_back({XmlField(item, "Key"), XmlField(item, "UploadId"),
                     ParseIsoTime(XmlField(item, "Initiated"))});
    }
    if (XmlField(response.body, "IsTruncated") != "true") break;
    key_marker = XmlField(response.body, "NextKeyMarker");
    id_marker = XmlField(response.body, "NextUploadIdMarker");
    if (key_marker.empty()) break;
  }
  return out;
}

PresignRequest S3Client::PresignFor(const std::string& method, const std::string& key,
                                    absl::Duration ttl) const {
  PresignRequest request;
  request.method = method;
  request.scheme = S3EndpointScheme(config_);
  request.host = S3EndpointHost(config_);
  request.path = absl::StrCat("/", config_.bucket, "/", key);
  request.region = config_.region;
  request.access_key_id = config_.access_key_id;
  request.secret_access_key = config_.secret_access_key;
  request.session_token = config_.session_token;
  request.now = absl::Now();
  request.expires = ttl;
  return request;
}

absl::StatusOr<std::string> S3Client::PresignGet(const std::string& key, absl::Duration ttl) const {
  return PresignUrl(PresignFor("GET", key, ttl));
}

absl::StatusOr<std::string> S3Client::PresignPut(const std::string& key,
                                                 const std::string& upload_id, int part_number,
                                                 absl::Duration ttl) const {
  PresignRequest request = PresignFor("PUT", key, ttl);
  if (part_number > 0) {
    request.query = {{"partNumber", absl::StrCat(part_number)}, {"uploadId", upload_id}};
  }
  return PresignUrl(request);
}

}  // namespace clmae

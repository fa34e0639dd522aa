#include "common/s3/http_call.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"

namespace clmae {
namespace {

// curl_global_init is not thread-safe; run it once before the first handle.
void GlobalInit() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

struct CallState {
  const HttpRequest* request;
  HttpResponse* response;
  int64_t sent = 0;
  absl::Status failure;  // why a callback aborted the transfer
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallState*>(user);
  absl::string_view line(data, size * count);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a 100 Continue): its status, known before the
    // body arrives, tells OnWrite a 2xx body (for the sink) from an error.
    state->response->headers.clear();
    const size_t space = line.find(' ');
    if (space != absl::string_view::npos) {
      state->response->status = std::atol(std::string(line.substr(space + 1, 3)).c_str());
    }
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    state->response->headers[name] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * count;
}

size_t OnWrite(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallState*>(user);
  const absl::string_view bytes(data, size * count);
  const long status = state->response->status;
  const long wanted = state->request->sink_status;
  if (state->request->sink && (wanted == 0 ? status / 100 == 2 : status == wanted)) {
    absl::Status sunk = state->request->sink(bytes);
    if (!sunk.ok()) {
      state->failure = sunk;
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    return bytes.size();
  }
  state->response->body.append(bytes.data(), bytes.size());
  return bytes.size();
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallState*>(user);
  const HttpRequest& r = *state->request;
  const int64_t left = r.body_length - state->sent;
  const size_t want = static_cast<size_t>(std::min<int64_t>(left, size * count));
  if (want == 0) return 0;
  const ssize_t got = pread(r.body_fd, buffer, want, r.body_offset + state->sent);
  if (got <= 0) {
    state->failure = absl::InternalError(absl::StrCat(
        "reading the upload's file at byte ", r.body_offset + state->sent, ": ",
        got == 0 ? "it ended early (it changed while it was being sent)" : std::strerror(errno)));
    return CURL_READFUNC_ABORT;
  }
  state->sent += got;
  if (r.on_body) r.on_body(absl::string_view(buffer, static_cast<size_t>(got)));
  return static_cast<size_t>(got);
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  // libcurl rewinds the body to resend it (an authentication round trip or a
  // redirect); hashing on the way cannot rewind, so refuse unless at 0.
  auto* state = static_cast<CallState*>(user);
  if (origin != SEEK_SET || offset != 0 || state->sent != 0) return CURL_SEEKFUNC_CANTSEEK;
  return CURL_SEEKFUNC_OK;
}

}  // namespace

std::string UrlForMessage(absl::string_view url) {
  return std::string(url.substr(0, url.find('?')));
}

absl::StatusOr<HttpResponse> PerformHttp(const HttpRequest& request) {
  GlobalInit();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  CURL* h = curl.get();
  HttpResponse response;
  CallState state{&request, &response, 0, absl::OkStatus()};
  char error[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (getenv("CLMAE_CURL_VERBOSE")) curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(request.connect_timeout)));
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                   std::max(1L, static_cast<long>(absl::ToInt64Seconds(request.stall_timeout))));
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &state);

  struct curl_slist* headers = nullptr;
  // No "Expect: 100-continue" round trip before each part. Not with
  // libcurl's SigV4, which would sign the emptied header.
  if (request.aws_sigv4.empty()) headers = curl_slist_append(headers, "Expect:");
  for (const auto& [name, value] : request.headers) {
    headers = curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers,
                                                                          &curl_slist_free_all);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

  if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.body_fd >= 0) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(h, CURLOPT_READDATA, &state);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &state);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body_length));
    if (request.method != "PUT") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  } else if (request.method == "PUT" || request.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.aws_sigv4.empty()) {
    // S3 wants the payload's digest as a header, and libcurl signs that
    // value as the payload hash when the header is given.
    header_list.reset(
        headers = curl_slist_append(
            header_list.release(),
            absl::StrCat("x-amz-content-sha256: ",
                         request.body_fd >= 0 ? "UNSIGNED-PAYLOAD" : Sha256Hex(request.body))
                .c_str()));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, request.aws_sigv4.c_str());
    curl_easy_setopt(h, CURLOPT_USERPWD, request.user.c_str());
  }

  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    if (!state.failure.ok()) return state.failure;
    return absl::UnavailableError(absl::StrCat(request.method, " ", UrlForMessage(request.url),
                                               ": ", error[0] ? error : curl_easy_strerror(code)));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  response.status = status;
  return response;
}

absl::Status HttpError(absl::string_view what, const HttpResponse& response) {
  const std::string code = XmlField(response.body, "Code");
  const std::string message = XmlField(response.body, "Message");
  std::string text = absl::StrCat(what, ": HTTP ", response.status);
  if (!code.empty()) absl::StrAppend(&text, " ", code);
  if (!message.empty()) absl::StrAppend(&text, " (", message, ")");
  const long s = response.status;
  if (s == 404) return absl::NotFoundError(text);
  if (s == 401 || s == 403) return absl::PermissionDeniedError(text);
  if (s == 400 || s == 409 || s == 411 || s == 412 || s == 416) {
    return absl::FailedPreconditionError(text);
  }
  if (s == 429 || s / 100 == 5) return absl::UnavailableError(text);
  return absl::UnknownError(text);
}

std::vector<std::string> XmlElements(absl::string_view xml, absl::string_view tag) {
  std::vector<std::string> out;
  const std::string open = absl::StrCat("<", tag, ">");
  const std::string close = absl::StrCat("</", tag, ">");
  size_t at = 0;
  while (true) {
    const size_t begin = xml.find(open, at);
    if (begin == absl::string_view::npos) break;
    const size_t end = xml.find(close, begin + open.size());
    if (end == absl::string_view::npos) break;
    out.push_back(absl::StrReplaceAll(xml.substr(begin + open.size(), end - begin - open.size()),
                                      {{"&lt;", "<"},
                                       {"&gt;", ">"},
                                       {"&quot;", "\""},
                                       {"&apos;", "'"},
                                       {"&#34;", "\""},
                                       {"&amp;", "&"}}));
    at = end + close.size();
  }
  return out;
}

std::string XmlField(absl::string_view xml, absl::string_view tag) {
  std::vector<std::string> all = XmlElements(xml, tag);
  return all.empty() ? std::string() : std::move(all.front());
}

}  // namespace clmae

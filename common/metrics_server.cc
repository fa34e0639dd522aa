#include "common/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "CivetServer.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace clmae {
namespace {

// civetweb's own reason for a failed start (the exception only says "null
// context"); written by the thread that constructs the Exposer.
thread_local std::string civetweb_error;

int LogCivetwebMessage(const mg_connection* /*connection*/, const char* message) {
  if (message != nullptr) civetweb_error = message;
  return 1;
}

}  // namespace

// A one-thread HTTP/1.0 server answering every GET with the exposition
// text (MetricsServerOptions::plain_http). civetweb (built with a small
// fixed thread stack) cannot start its threads in a process whose static TLS
// is larger than that stack, which is the case of clmae-train with
// LibTorch's CUDA libraries loaded: glibc's pthread_create refuses with
// EINVAL. std::thread uses the default stack.
class MetricsServer::PlainServer {
 public:
  static absl::StatusOr<std::unique_ptr<PlainServer>> Start(const std::string& host, int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::UnavailableError(std::strerror(errno));
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not an IPv4 address"));
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 16) != 0) {
      const std::string why = std::strerror(errno);
      close(fd);
      return absl::UnavailableError(why);
    }
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return std::unique_ptr<PlainServer>(new PlainServer(fd, ntohs(addr.sin_port)));
  }
  ~PlainServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  void Add(const std::shared_ptr<prometheus::Collectable>& collectable) {
    std::lock_guard<std::mutex> lock(mu_);
    collectables_.push_back(collectable);
  }

 private:
  PlainServer(int fd, int port) : fd_(fd), port_(port), thread_([this] { Loop(); }) {}
  void Loop() {
    while (!stop_) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 200) <= 0) continue;
      const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      timeval timeout{2, 0};
      setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      char request[2048];
      const ssize_t n = read(client, request, sizeof(request) - 1);
      std::string response;
      if (n > 0 && std::strncmp(request, "GET ", 4) == 0) {
        std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
        {
          std::lock_guard<std::mutex> lock(mu_);
          collectables = collectables_;
        }
        const std::string body = ExpositionText(collectables);
        response = absl::StrCat(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ",
            body.size(), "\r\nConnection: close\r\n\r\n", body);
      } else {
        response = "HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
      }
      for (size_t sent = 0; sent < response.size();) {
        const ssize_t w =
            send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += static_cast<size_t>(w);
      }
      close(client);
    }
  }

  const int fd_;
  const int port_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::thread thread_;
};

MetricsServer::MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, int port)
    : exposer_(std::move(exposer)), port_(port) {}
MetricsServer::MetricsServer(std::unique_ptr<PlainServer> plain, int port)
    : plain_(std::move(plain)), port_(port) {}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsServerOptions& options,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  const std::string& address = options.listen_address;
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address,
                     "' is not host:port with a port in 0..65535 (0 = a free port)"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server threads: ", options.threads, "; at least 1"));
  }
  if (options.plain_http) {
    const std::string host = address.substr(0, colon);
    absl::StatusOr<std::unique_ptr<PlainServer>> plain =
        PlainServer::Start(host.empty() ? "0.0.0.0" : host, port);
    if (!plain.ok()) {
      return absl::Status(plain.status().code(), absl::StrCat("cannot serve metrics on ", address,
                                                              ": ", plain.status().message()));
    }
    const int bound = (*plain)->port();
    std::unique_ptr<MetricsServer> server(new MetricsServer(*std::move(plain), bound));
    for (const auto& collectable : collectables) server->Add(collectable);
    return server;
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  CivetCallbacks callbacks;
  callbacks.log_message = LogCivetwebMessage;
  civetweb_error.clear();
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, options.threads, &callbacks);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ",
                                               civetweb_error.empty() ? e.what() : civetweb_error));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": no port was bound"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(exposer), ports.front()));
  for (const auto& collectable : collectables) server->Add(collectable);
  return server;
}

MetricsServer::~MetricsServer() = default;  // PlainServer is complete here

void MetricsServer::Add(const std::shared_ptr<prometheus::Collectable>& collectable) {
  if (plain_ != nullptr) return plain_->Add(collectable);
  exposer_->RegisterCollectable(collectable);
}

std::string MetricsListenAddress(int port) { return absl::StrCat("0.0.0.0:", port); }

std::string ExpositionText(
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& collectable : collectables) {
    std::vector<prometheus::MetricFamily> more = collectable->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace clmae

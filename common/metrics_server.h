#pragma once

// The /metrics endpoint every clmae process serves (prometheus-cpp's pull
// Exposer), and the exposition text of a set of collectables (for tests and
// benchmarks, which scrape without a network).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace clmae {

struct MetricsServerOptions {
  // host:port; port 0 picks a free port (see MetricsServer::port()).
  std::string listen_address = "0.0.0.0:9400";
  int threads = 2;  // HTTP worker threads
  // Serve from one plain HTTP thread of our own instead of civetweb.
  // clmae-train needs it: civetweb starts its threads with a small fixed
  // stack, which LibTorch's CUDA libraries' static TLS does not fit in
  // (pthread_create refuses), and a failed civetweb start keeps its
  // listening socket.
  bool plain_http = false;
};

// Serves `/metrics` over plain HTTP. Thread-safe.
class MetricsServer {
 public:
  // Binds and starts serving the collectables (registries or custom
  // collectors; each must outlive its registration or be removed first:
  // they are held weakly). INVALID_ARGUMENT for a malformed address,
  // UNAVAILABLE (naming the address) when it cannot be bound, e.g. the port
  // is taken.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const MetricsServerOptions& options,
      const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);
  ~MetricsServer();

  // The bound port (the chosen one when the address asked for port 0).
  int port() const { return port_; }
  void Add(const std::shared_ptr<prometheus::Collectable>& collectable);

 private:
  class PlainServer;
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, int port);
  MetricsServer(std::unique_ptr<PlainServer> plain, int port);
  std::unique_ptr<prometheus::Exposer> exposer_;
  // Used where civetweb cannot start its threads (see metrics_server.cc).
  std::unique_ptr<PlainServer> plain_;
  int port_;
};

// "0.0.0.0:<port>": what the trainer's and agent's --metrics_port select.
std::string MetricsListenAddress(int port);

// The Prometheus text exposition of everything the collectables hold now.
std::string ExpositionText(
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);

}  // namespace clmae

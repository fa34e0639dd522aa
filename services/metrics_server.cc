#include "services/metrics_server.h"

#include <exception>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace clmae {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsServerOptions& options,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  const std::string& address = options.listen_address;
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address '", address, "' is not host:port with a port in 0..65535 (0 = a free port)"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server threads: ", options.threads, "; at least 1"));
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, options.threads);
  } catch (const std::exception& e) {
    // civetweb says only "null context when constructing CivetServer".
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address,
                                               " (is the port taken?): ", e.what()));
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

MetricsServer::~MetricsServer() = default;

void MetricsServer::Add(const std::shared_ptr<prometheus::Collectable>& collectable) {
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

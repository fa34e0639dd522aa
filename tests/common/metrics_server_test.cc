#include "common/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

// GET /metrics from 127.0.0.1:port; the whole HTTP response.
std::string HttpGet(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
};

TEST_F(MetricsServerTest, PortZeroPicksAFreePortAndServesTheRegistry) {
  prometheus::BuildCounter()
      .Name("clmae_test_events_total")
      .Help("Events seen by the test")
      .Register(*registry_)
      .Add({{"kind", "a"}})
      .Increment(3);
  auto server = MetricsServer::Start({.listen_address = "127.0.0.1:0"}, {registry_});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  const std::string response = HttpGet((*server)->port());
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("# HELP clmae_test_events_total Events seen by the test"));
  EXPECT_THAT(response, HasSubstr("clmae_test_events_total{kind=\"a\"} 3"));
}

TEST_F(MetricsServerTest, ATakenPortIsAnErrorNamingTheAddress) {
  auto first = MetricsServer::Start({.listen_address = "127.0.0.1:0"}, {registry_});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Start({.listen_address = taken}, {registry_});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(taken));
}

TEST_F(MetricsServerTest, PlainHttpServesTheSameTextOnAFixedPortAndReleasesIt) {
  prometheus::BuildGauge()
      .Name("clmae_test_level")
      .Help("A level")
      .Register(*registry_)
      .Add({})
      .Set(7);
  auto probe =
      MetricsServer::Start({.listen_address = "127.0.0.1:0", .plain_http = true}, {registry_});
  ASSERT_TRUE(probe.ok()) << probe.status();
  const std::string address = "127.0.0.1:" + std::to_string((*probe)->port());
  // Taken while the first one serves; free again once it is gone.
  auto taken = MetricsServer::Start({.listen_address = address, .plain_http = true}, {registry_});
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(taken.status().message(), HasSubstr(address));
  const int port = (*probe)->port();
  probe->reset();
  auto server = MetricsServer::Start({.listen_address = address, .plain_http = true}, {registry_});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->port(), port);
  const std::string response = HttpGet(port);
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("clmae_test_level 7"));
}

TEST_F(MetricsServerTest, MalformedAddressesAreInvalid) {
  for (const std::string address : {"9400", "host:", "host:70000", ":-1", "host:x"}) {
    auto server = MetricsServer::Start({.listen_address = address}, {registry_});
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
  }
}

TEST_F(MetricsServerTest, ExpositionTextJoinsTheCollectables) {
  auto other = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("clmae_a_total").Help("a").Register(*registry_).Add({});
  prometheus::BuildCounter().Name("clmae_b_total").Help("b").Register(*other).Add({}).Increment();
  const std::string text = ExpositionText({registry_, other});
  EXPECT_THAT(text, HasSubstr("clmae_a_total 0"));
  EXPECT_THAT(text, HasSubstr("clmae_b_total 1"));
  EXPECT_EQ(MetricsListenAddress(9401), "0.0.0.0:9401");
}

}  // namespace
}  // namespace clmae

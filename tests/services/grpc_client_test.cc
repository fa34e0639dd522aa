#include "services/grpc_client.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

TEST(MakeClientChannelTest, PlaintextNeedsOnlyAnAddress) {
  ClientOptions options;
  options.address = "127.0.0.1:1";
  EXPECT_TRUE(MakeClientChannel(options).ok());
  options.address.clear();
  EXPECT_EQ(MakeClientChannel(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MakeClientChannelTest, CertificateFilesAreReadAndNamedWhenBad) {
  ClientOptions options;
  options.tls_ca_file = ::testing::TempDir() + "/clmae_no_such_ca.pem";
  auto missing = MakeClientChannel(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("clmae_no_such_ca.pem"));

  const std::string not_pem = ::testing::TempDir() + "/clmae_not_pem.txt";
  std::ofstream(not_pem) << "hello\n";
  options.tls_ca_file = not_pem;
  auto bad = MakeClientChannel(options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr(not_pem));
}

TEST(MakeClientChannelTest, IncompleteTlsSetupsAreRefused) {
  ClientOptions options;
  options.tls_cert_file = "cert.pem";  // no key
  EXPECT_EQ(MakeClientChannel(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tls_key_file = "key.pem";  // no CA
  EXPECT_THAT(MakeClientChannel(options).status().message(), HasSubstr("CA"));
}

}  // namespace
}  // namespace clmae

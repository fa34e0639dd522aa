// TLS and mutual TLS end to end over loopback TCP, with a CA and
// certificates made by the openssl command for each run (skipped without
// it).

#include "services/tls.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "clmae/v1/coordinator.grpc.pb.h"
#include "gtest/gtest.h"
#include "services/grpc_client.h"
#include "services/server.h"

namespace clmae {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("openssl version > /dev/null 2>&1") != 0) {
      GTEST_SKIP() << "no openssl command to make certificates with";
    }
    std::string tmpl = ::testing::TempDir() + "/clmae_tls_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    // A CA, and a server and a client certificate it signs.
    ASSERT_TRUE(
        Run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca "
            "-keyout ca.key -out ca.pem"));
    for (const std::string name : {"server", "client"}) {
      ASSERT_TRUE(Run("openssl req -newkey rsa:2048 -nodes -subj /CN=" + name + " -keyout " + name +
                      ".key -out " + name + ".csr"));
      ASSERT_TRUE(Run("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > " + name + ".ext"));
      ASSERT_TRUE(Run("openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key " +
                      "-CAcreateserial -days 1 -extfile " + name + ".ext -out " + name + ".pem"));
    }
    CoordinatorOptions options;
    options.store_path = dir_ + "/coordinator.db";
    auto opened = Coordinator::Open(std::move(options));
    ASSERT_TRUE(opened.ok()) << opened.status();
    coordinator_ = std::move(*opened);
  }
  void TearDown() override {
    server_.reset();
    coordinator_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  bool Run(const std::string& command) {
    const std::string line = "cd '" + dir_ + "' && (" + command + ") > /dev/null 2>&1";
    return std::system(line.c_str()) == 0;
  }

  void StartServer(bool mutual, std::vector<TokenEntry> more_tokens = {}) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tokens = {TokenEntry::ForToken("tls-client", Role::kOperator, "tls-client-token")};
    for (TokenEntry& t : more_tokens) options.tokens.push_back(std::move(t));
    options.tls.cert_file = dir_ + "/server.pem";
    options.tls.key_file = dir_ + "/server.key";
    if (mutual) options.tls.client_ca_file = dir_ + "/ca.pem";
    auto started = CoordinatorServer::Start(options, coordinator_.get());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
  }

  ClientOptions Client() {
    ClientOptions options;
    options.address = "127.0.0.1:" + std::to_string(server_->port());
    options.token = "tls-client-token";
    options.tls_ca_file = dir_ + "/ca.pem";
    return options;
  }

  // The client certificate (common name "client") and no token.
  ClientOptions CertificateOnly() {
    ClientOptions options = Client();
    options.token.clear();
    options.tls_cert_file = dir_ + "/client.pem";
    options.tls_key_file = dir_ + "/client.key";
    return options;
  }

  grpc::StatusCode ListWorkers(const ClientOptions& options) {
    auto channel = MakeClientChannel(options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok()) return grpc::StatusCode::INTERNAL;
    auto stub = v1::Coordinator::NewStub(*channel);
    grpc::ClientContext context;
    AuthorizeCall(context, options);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ListWorkersResponse response;
    const grpc::Status status = stub->ListWorkers(&context, v1::ListWorkersRequest(), &response);
    if (!status.ok()) std::cerr << "ListWorkers: " << status.error_message() << "\n";
    return status.error_code();
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(TlsTest, ClientsThatTrustTheCaGetIn) {
  StartServer(/*mutual=*/false);
  EXPECT_EQ(ListWorkers(Client()), grpc::StatusCode::OK);
  ClientOptions by_name = Client();
  by_name.address = "localhost:" + std::to_string(server_->port());
  EXPECT_EQ(ListWorkers(by_name), grpc::StatusCode::OK);

  ClientOptions plaintext = Client();
  plaintext.tls_ca_file.clear();
  EXPECT_EQ(ListWorkers(plaintext), grpc::StatusCode::UNAVAILABLE);
  ClientOptions wrong_name = Client();
  wrong_name.tls_server_name = "not-the-server.example";
  EXPECT_EQ(ListWorkers(wrong_name), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  StartServer(/*mutual=*/true);
  EXPECT_EQ(ListWorkers(Client()), grpc::StatusCode::UNAVAILABLE);  // no client certificate
  ClientOptions with_cert = Client();
  with_cert.tls_cert_file = dir_ + "/client.pem";
  with_cert.tls_key_file = dir_ + "/client.key";
  EXPECT_EQ(ListWorkers(with_cert), grpc::StatusCode::OK);
}

// A client certificate names the principal: "client" (its common name) is
// listed as a `cert` operator, so it needs no token; a token, when given,
// still wins over the certificate.
TEST_F(TlsTest, AListedClientCertificateIsItsPrincipal) {
  TokenEntry client{"client", Role::kOperator};
  client.certificate = true;
  StartServer(/*mutual=*/true, {client});
  const ClientOptions cert_only = CertificateOnly();
  EXPECT_EQ(ListWorkers(cert_only), grpc::StatusCode::OK);
  ClientOptions wrong_token = cert_only;
  wrong_token.token = "not-a-token";
  EXPECT_EQ(ListWorkers(wrong_token), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, AClientCertificateAsAUserGetsAUsersRights) {
  TokenEntry client{"client", Role::kUser};
  client.certificate = true;
  StartServer(/*mutual=*/true, {client});
  const ClientOptions cert_only = CertificateOnly();
  EXPECT_EQ(ListWorkers(cert_only), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(TlsTest, AnUnlistedClientCertificateIsNoPrincipal) {
  StartServer(/*mutual=*/true);  // "client" is not a `cert` principal
  const ClientOptions cert_only = CertificateOnly();
  EXPECT_EQ(ListWorkers(cert_only), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace clmae

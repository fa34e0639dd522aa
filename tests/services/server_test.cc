// The server around the services: health wired to readiness, reflection,
// the bound port over real TCP, and the refusal to run without auth.
// Health and reflection have no generated stubs here, so their messages are
// built and read as raw protobuf wire format through a generic stub.

#include "services/server.h"

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "services/status_mapping.h"
#include "tests/services/generic_call.h"
#include "tests/services/server_fixture.h"

namespace clmae {
namespace {

using ::clmae::testing::CallOnce;
using ::clmae::testing::LengthDelimited;
using ::google::protobuf::UnknownField;
using ::google::protobuf::UnknownFieldSet;
using ::testing::Contains;
using ::testing::HasSubstr;

// grpc.health.v1.HealthCheckResponse.status (1 = SERVING, 2 = NOT_SERVING).
absl::StatusOr<int> HealthStatus(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& service) {
  absl::StatusOr<std::string> bytes = CallOnce(channel, "/grpc.health.v1.Health/Check",
                                               service.empty() ? "" : LengthDelimited(1, service));
  if (!bytes.ok()) return bytes.status();
  UnknownFieldSet fields;
  if (!fields.ParseFromString(*bytes)) return absl::InternalError("bad HealthCheckResponse");
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == 1) return static_cast<int>(fields.field(i).varint());
  }
  return 0;  // proto3 default: UNKNOWN
}

class ServerTest : public ServerFixture {};

// Reflection answers without a token, so it is served only when asked for.
class ReflectionServerTest : public ServerFixture {
 protected:
  ReflectionServerTest() { reflection_ = true; }
};

TEST_F(ServerTest, HealthReportsServingForTheServerAndBothServicesWithoutAToken) {
  for (const std::string service : {"", "clmae.v1.Coordinator", "clmae.v1.WorkerControl"}) {
    SCOPED_TRACE(service);
    absl::StatusOr<int> status = HealthStatus(channel_, service);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, 1);
  }
  EXPECT_EQ(HealthStatus(channel_, "no.such.Service").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ReflectionServerTest, ReflectionListsTheServices) {
  // ServerReflectionRequest{list_services: ""} (field 7).
  absl::StatusOr<std::string> bytes =
      CallOnce(channel_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
               LengthDelimited(7, ""));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // ServerReflectionResponse.list_services_response (6) -> service (1) -> name (1).
  UnknownFieldSet response;
  ASSERT_TRUE(response.ParseFromString(*bytes));
  std::vector<std::string> names;
  for (int i = 0; i < response.field_count(); ++i) {
    if (response.field(i).number() != 6) continue;
    UnknownFieldSet list;
    ASSERT_TRUE(list.ParseFromString(response.field(i).length_delimited()));
    for (int j = 0; j < list.field_count(); ++j) {
      UnknownFieldSet service;
      ASSERT_TRUE(service.ParseFromString(list.field(j).length_delimited()));
      ASSERT_GT(service.field_count(), 0);
      names.push_back(service.field(0).length_delimited());
    }
  }
  EXPECT_THAT(names, Contains("clmae.v1.Coordinator"));
  EXPECT_THAT(names, Contains("clmae.v1.WorkerControl"));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));
}

TEST_F(ServerTest, ServesTheBoundPortOverTcpWithTokensAsMetadata) {
  ASSERT_GT(server_->port(), 0);
  ClientOptions options;
  options.address = "127.0.0.1:" + std::to_string(server_->port());
  options.token = kClientToken;
  auto channel = MakeClientChannel(options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto stub = v1::Coordinator::NewStub(*channel);
  grpc::ClientContext context;
  AuthorizeCall(context, options);
  v1::ListWorkersResponse response;
  grpc::Status status = stub->ListWorkers(&context, v1::ListWorkersRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();

  grpc::ClientContext anonymous;
  EXPECT_EQ(stub->ListWorkers(&anonymous, v1::ListWorkersRequest(), &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerTest, RefusesToStartWithoutTokensUnlessInsecureIsAsked) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto refused = CoordinatorServer::Start(options, coordinator_.get());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--insecure_no_auth"));

  options.insecure_no_auth = true;
  auto open = CoordinatorServer::Start(options, coordinator_.get());
  ASSERT_TRUE(open.ok()) << open.status();
  auto stub = v1::Coordinator::NewStub((*open)->InProcessChannel());
  grpc::ClientContext context;
  v1::ListWorkersResponse response;
  EXPECT_TRUE(stub->ListWorkers(&context, v1::ListWorkersRequest(), &response).ok());
  (*open)->Shutdown(absl::Seconds(5));
}

TEST_F(ServerTest, ATakenPortIsUnavailable) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:" + std::to_string(server_->port());
  options.insecure_no_auth = true;
  auto second = CoordinatorServer::Start(options, coordinator_.get());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("--listen"));
}

TEST_F(ServerTest, TlsFilesThatCannotBeReadAreNamed) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.insecure_no_auth = true;
  options.tls.cert_file = dir_ + "/missing-cert.pem";
  options.tls.key_file = dir_ + "/missing-key.pem";
  auto refused = CoordinatorServer::Start(options, coordinator_.get());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("missing-cert.pem"));

  options.tls.key_file.clear();
  EXPECT_EQ(CoordinatorServer::Start(options, coordinator_.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clmae

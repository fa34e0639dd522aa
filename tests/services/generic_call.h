#pragma once

// Calls to services this project has no generated stubs for (health,
// reflection), with messages built and read as raw protobuf wire format
// through a generic stub.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "services/status_mapping.h"

namespace clmae::testing {

// A length-delimited field `number` holding `bytes` (short values only).
inline std::string LengthDelimited(int number, const std::string& bytes) {
  EXPECT_LT(bytes.size(), 128u);
  return std::string(1, static_cast<char>(number << 3 | 2)) +
         std::string(1, static_cast<char>(bytes.size())) + bytes;
}

inline grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

inline std::string FromBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// Waits for the one event a step of an async generic call produces.
inline bool Await(grpc::CompletionQueue& queue, void* tag) {
  void* got = nullptr;
  bool ok = false;
  EXPECT_TRUE(queue.Next(&got, &ok));
  EXPECT_EQ(got, tag);
  return ok;
}

// Sends `request` on `method` (any arity) and returns the first response.
inline absl::StatusOr<std::string> CallOnce(const std::shared_ptr<grpc::Channel>& channel,
                                            const std::string& method, const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto call = stub.PrepareCall(&context, method, &queue);
  int tags[5];
  call->StartCall(&tags[0]);
  Await(queue, &tags[0]);
  call->Write(ToBuffer(request), &tags[1]);
  Await(queue, &tags[1]);
  grpc::ByteBuffer response;
  call->Read(&response, &tags[2]);
  const bool got_response = Await(queue, &tags[2]);
  call->WritesDone(&tags[3]);
  Await(queue, &tags[3]);
  grpc::Status status;
  call->Finish(&status, &tags[4]);
  Await(queue, &tags[4]);
  queue.Shutdown();
  void* tag;
  bool ok;
  while (queue.Next(&tag, &ok)) {
  }
  if (!status.ok()) return FromGrpcStatus(status);
  if (!got_response) return absl::InternalError("no response");
  return FromBuffer(response);
}

}  // namespace clmae::testing

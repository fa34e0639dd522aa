// StreamWriter's rules, against a reactor that records what it is asked to
// do: one write in flight, order kept, coalescing, the bound, and a Finish
// that never overtakes a write.

#include "services/stream_writer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class RecordingReactor {
 public:
  void StartWrite(const std::string* message) { writes.push_back(*message); }
  void Finish(grpc::Status status) { finishes.push_back(status); }
  std::vector<std::string> writes;
  std::vector<grpc::Status> finishes;
};

using Writer = StreamWriter<RecordingReactor, std::string>;

TEST(StreamWriterTest, WritesOneAtATimeInOrder) {
  RecordingReactor reactor;
  Writer writer(&reactor, 10, "slow", /*held=*/false);
  EXPECT_TRUE(writer.Push("a"));
  EXPECT_TRUE(writer.Push("b"));
  EXPECT_TRUE(writer.Push("c"));
  EXPECT_THAT(reactor.writes, ElementsAre("a"));  // b and c wait for a
  writer.OnWriteDone(true);
  EXPECT_THAT(reactor.writes, ElementsAre("a", "b"));
  writer.OnWriteDone(true);
  writer.OnWriteDone(true);
  EXPECT_THAT(reactor.writes, ElementsAre("a", "b", "c"));
  EXPECT_THAT(reactor.finishes, IsEmpty());
}

TEST(StreamWriterTest, HeldWritesStartOnRelease) {
  RecordingReactor reactor;
  Writer writer(&reactor, 10, "slow", /*held=*/true);
  writer.Push("a");
  writer.FinishAfterQueued(grpc::Status::OK);
  EXPECT_THAT(reactor.writes, IsEmpty());
  EXPECT_THAT(reactor.finishes, IsEmpty());
  writer.Release();
  EXPECT_THAT(reactor.writes, ElementsAre("a"));
  writer.OnWriteDone(true);
  ASSERT_EQ(reactor.finishes.size(), 1u);
  EXPECT_TRUE(reactor.finishes[0].ok());
}

TEST(StreamWriterTest, CoalescedMessagesReplaceTheWaitingOne) {
  RecordingReactor reactor;
  Writer writer(&reactor, 10, "slow", /*held=*/false);
  writer.Push("progress 1", "job-a");  // in flight at once
  writer.Push("event", "");
  writer.Push("progress 2", "job-a");
  writer.Push("progress 3", "job-a");  // replaces "progress 2"
  writer.Push("progress b", "job-b");
  for (int i = 0; i < 4; ++i) writer.OnWriteDone(true);
  EXPECT_THAT(reactor.writes, ElementsAre("progress 1", "event", "progress 3", "progress b"));
}

TEST(StreamWriterTest, OverflowFinishesWithResourceExhaustedAfterTheWriteInFlight) {
  RecordingReactor reactor;
  Writer writer(&reactor, 2, "reads too slowly", /*held=*/false);
  EXPECT_TRUE(writer.Push("in flight"));
  EXPECT_TRUE(writer.Push("queued 1"));
  EXPECT_TRUE(writer.Push("queued 2"));
  EXPECT_FALSE(writer.Push("one too many"));
  EXPECT_TRUE(writer.finishing());
  EXPECT_THAT(reactor.finishes, IsEmpty());  // never while a write is in flight
  writer.OnWriteDone(true);
  ASSERT_EQ(reactor.finishes.size(), 1u);
  EXPECT_EQ(reactor.finishes[0].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(reactor.finishes[0].error_message(), "reads too slowly");
  EXPECT_THAT(reactor.writes, ElementsAre("in flight"));  // the queue was dropped
  EXPECT_FALSE(writer.Push("late"));
  EXPECT_THAT(reactor.writes, ElementsAre("in flight"));
}

TEST(StreamWriterTest, FinishIsCalledOnceWithTheFirstStatus) {
  RecordingReactor reactor;
  Writer writer(&reactor, 10, "slow", /*held=*/false);
  writer.FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "first"));
  writer.FinishNow(grpc::Status(grpc::StatusCode::INTERNAL, "second"));
  writer.FinishAfterQueued(grpc::Status::OK);
  ASSERT_EQ(reactor.finishes.size(), 1u);
  EXPECT_EQ(reactor.finishes[0].error_message(), "first");
}

TEST(StreamWriterTest, AFailedWriteEndsTheStream) {
  RecordingReactor reactor;
  Writer writer(&reactor, 10, "slow", /*held=*/false);
  writer.Push("a");
  writer.Push("b");
  writer.OnWriteDone(false);
  EXPECT_THAT(reactor.writes, ElementsAre("a"));
  ASSERT_EQ(reactor.finishes.size(), 1u);
  EXPECT_EQ(reactor.finishes[0].error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace clmae

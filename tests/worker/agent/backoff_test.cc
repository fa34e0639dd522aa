#include "worker/agent/backoff.h"

#include "gtest/gtest.h"

namespace clmae {
namespace {

TEST(BackoffTest, DoublesUpToTheMaximumWithJitterInTheUpperHalf) {
  Backoff backoff(absl::Milliseconds(100), absl::Milliseconds(1000));
  const absl::Duration caps[] = {absl::Milliseconds(100),  absl::Milliseconds(200),
                                 absl::Milliseconds(400),  absl::Milliseconds(800),
                                 absl::Milliseconds(1000), absl::Milliseconds(1000)};
  for (absl::Duration cap : caps) {
    const absl::Duration d = backoff.Next();
    EXPECT_GE(d, cap / 2);
    EXPECT_LE(d, cap);
  }
  backoff.Reset();
  EXPECT_LE(backoff.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, DelaysVary) {
  Backoff backoff(absl::Seconds(1), absl::Seconds(1));
  const absl::Duration first = backoff.Next();
  bool varied = false;
  for (int i = 0; i < 20 && !varied; ++i) varied = backoff.Next() != first;
  EXPECT_TRUE(varied);
}

}  // namespace
}  // namespace clmae

#include "worker/process/output_pump.h"

#include <fcntl.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

class OutputPumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe2(out_, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(err_, O_CLOEXEC), 0);
    auto pump = OutputPump::Start(out_[0], err_[0], [this](OutputStream s, absl::string_view l) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(s, std::string(l));
    });
    ASSERT_TRUE(pump.ok()) << pump.status();
    pump_ = *std::move(pump);
  }
  void TearDown() override {
    pump_.reset();
    CloseWriters();
  }
  void CloseWriters() {
    for (int* fd : {&out_[1], &err_[1]}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }
  void Put(int fd, const std::string& text) {
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  std::vector<std::pair<OutputStream, std::string>> Lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  int out_[2] = {-1, -1};
  int err_[2] = {-1, -1};
  std::unique_ptr<OutputPump> pump_;
  std::mutex mu_;
  std::vector<std::pair<OutputStream, std::string>> lines_;
};

TEST_F(OutputPumpTest, JoinsPiecesIntoLinesAndKeepsStreamsApart) {
  Put(out_[1], "hel");
  Put(err_[1], "warn");
  Put(out_[1], "lo\nwor");
  Put(err_[1], "ing\n");
  Put(out_[1], "ld\n");
  CloseWriters();
  pump_->Finish();
  auto lines = Lines();
  std::vector<std::string> out, err;
  for (auto& [stream, line] : lines) (stream == OutputStream::kStdout ? out : err).push_back(line);
  EXPECT_THAT(out, ElementsAre("hello", "world"));
  EXPECT_THAT(err, ElementsAre("warning"));
}

TEST_F(OutputPumpTest, DeliversAnUnterminatedLastLineAtEndOfFile) {
  Put(out_[1], "one\ntwo");
  CloseWriters();
  pump_->Finish();
  EXPECT_THAT(Lines(),
              ElementsAre(Pair(OutputStream::kStdout, "one"), Pair(OutputStream::kStdout, "two")));
}

TEST_F(OutputPumpTest, CutsOverlongLines) {
  std::string big(OutputPump::kMaxLineBytes + 10, 'x');
  Put(err_[1], big + "\n");
  CloseWriters();
  pump_->Finish();
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].second.size(), OutputPump::kMaxLineBytes);
  EXPECT_EQ(lines[1].second, std::string(10, 'x'));
}

TEST_F(OutputPumpTest, FinishReturnsWhileAWriterStillHoldsThePipe) {
  // As when a grandchild inherited the pipe: no end of file ever comes.
  Put(out_[1], "done\npartial");
  pump_->Finish();
  EXPECT_THAT(Lines(), ElementsAre(Pair(OutputStream::kStdout, "done"),
                                   Pair(OutputStream::kStdout, "partial")));
}

}  // namespace
}  // namespace clmae

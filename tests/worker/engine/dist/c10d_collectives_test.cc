// Gloo over loopback with two ranks in one process (one thread each), as
// c10d's own C++ tests do: real TCP, real rendezvous, no processes to manage.

#include "worker/engine/dist/c10d_collectives.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class C10dCollectivesTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }

  DistOptions Options(int rank, int world, absl::Duration timeout = absl::Seconds(30)) {
    DistOptions o;
    o.rank = rank;
    o.world_size = world;
    o.master_addr = "127.0.0.1";
    o.master_port = port_;
    o.timeout = timeout;
    return o;
  }

  // Runs `body(rank, collectives)` on each of `world` ranks, one thread each.
  void RunRanks(int world, const std::function<void(int, Collectives&)>& body,
                absl::Duration timeout = absl::Seconds(30)) {
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        auto c = ConnectCollectives(Options(r, world, timeout), torch::kCPU);
        ASSERT_TRUE(c.ok()) << c.status();
        EXPECT_EQ((*c)->rank(), r);
        EXPECT_EQ((*c)->world_size(), world);
        body(r, **c);
      });
    }
    for (auto& t : threads) t.join();
  }

  // A small network: two linear layers and an unused parameter.
  struct Net {
    torch::nn::Linear a{nullptr}, b{nullptr};
    torch::Tensor unused;
    std::vector<torch::Tensor> params;
  };
  // Same values on every thread without the (process-wide) default generator.
  static Net MakeNet() {
    Net n;
    n.a = torch::nn::Linear(6, 5);
    n.b = torch::nn::Linear(5, 3);
    n.unused = torch::zeros({4}).requires_grad_(true);
    for (auto& p : n.a->parameters()) n.params.push_back(p);
    for (auto& p : n.b->parameters()) n.params.push_back(p);
    n.params.push_back(n.unused);
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < n.params.size(); ++i) {
      auto& p = n.params[i];
      p.copy_(torch::sin(torch::arange(p.numel(), torch::kFloat32) * 0.7 + static_cast<double>(i))
                  .reshape(p.sizes()) *
              0.5);
    }
    return n;
  }
  static torch::Tensor Input(int rank) {
    return torch::linspace(-1.0 + rank, 1.0 + 2 * rank, 24).reshape({4, 6});
  }
  static torch::Tensor Loss(Net& n, const torch::Tensor& x) {
    return n.b(torch::tanh(n.a(x))).pow(2).mean();
  }

  int port_ = FreePort();
};

TEST_F(C10dCollectivesTest, WorldSizeOneNeedsNoNetwork) {
  DistOptions o;  // world size 1, default port: nothing listens or connects
  auto c = ConnectCollectives(o, torch::kCPU);
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<double> v = {1.5, -2};
  ASSERT_TRUE((*c)->AverageScalars(v).ok());
  EXPECT_EQ(v, (std::vector<double>{1.5, -2}));
  ASSERT_TRUE((*c)->MinMaxScalars(v).ok());
  EXPECT_EQ(v, (std::vector<double>{1.5, -2, 1.5, -2}));
}

TEST_F(C10dCollectivesTest, RejectsInconsistentOptions) {
  auto bad_rank = ConnectCollectives(Options(2, 2), torch::kCPU);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_rank.status()));
  EXPECT_THAT(bad_rank.status().message(), HasSubstr("rank 2 is outside [0, 2)"));
  DistOptions no_port = Options(0, 2);
  no_port.master_port = 0;
  EXPECT_THAT(ConnectCollectives(no_port, torch::kCPU).status().message(),
              HasSubstr("MASTER_PORT"));
}

TEST_F(C10dCollectivesTest, ScalarsBroadcastAndBarrier) {
  RunRanks(3, [](int rank, Collectives& c) {
    std::vector<double> v = {static_cast<double>(rank), 10.0 * rank};
    ASSERT_TRUE(c.AverageScalars(v).ok());
    EXPECT_DOUBLE_EQ(v[0], 1.0);
    EXPECT_DOUBLE_EQ(v[1], 10.0);
    std::vector<double> m = {static_cast<double>(rank)};
    ASSERT_TRUE(c.MinMaxScalars(m).ok());
    EXPECT_EQ(m, (std::vector<double>{0, 2}));
    auto f = torch::full({3, 2}, static_cast<float>(rank));
    auto d = torch::full({5}, static_cast<double>(rank + 7), torch::kFloat64);
    ASSERT_TRUE(c.Broadcast({f, d}).ok());
    EXPECT_TRUE(torch::equal(f, torch::zeros({3, 2})));
    EXPECT_TRUE(torch::equal(d, torch::full({5}, 7.0, torch::kFloat64)));
    EXPECT_TRUE(c.Barrier().ok());
  });
}

// The averaged gradients equal the mean of each rank's own gradients, with
// buckets launched during backward (overlap) or all at the end, and with
// buckets smaller than one parameter or larger than all of them.
TEST_F(C10dCollectivesTest, AveragesGradientsInBuckets) {
  // Reference: each rank's gradients computed alone.
  std::vector<std::vector<torch::Tensor>> alone(2);
  for (int r = 0; r < 2; ++r) {
    Net n = MakeNet();
    Loss(n, Input(r)).backward();
    for (auto& p : n.params)
      alone[r].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  }
  for (bool overlap : {true, false}) {
    for (int64_t bucket_bytes : {int64_t{16}, int64_t{100}, int64_t{1} << 20}) {
      port_ = FreePort();
      RunRanks(2, [&](int rank, Collectives& c) {
        Net n = MakeNet();
        GradientAveragerOptions ao;
        ao.bucket_bytes = bucket_bytes;
        ao.overlap = overlap;
        auto avg = c.NewGradientAverager(n.params, "test gradients", ao);
        ASSERT_TRUE(avg.ok()) << avg.status();
        for (int step = 0; step < 2; ++step) {  // the averager is reusable
          for (auto& p : n.params) p.mutable_grad() = torch::Tensor();
          (*avg)->Arm();
          Loss(n, Input(rank)).backward();
          ASSERT_TRUE((*avg)->Finish().ok());
          for (size_t i = 0; i < n.params.size(); ++i) {
            if (!alone[0][i].defined()) {
              EXPECT_FALSE(n.params[i].grad().defined()) << "parameter " << i;
              continue;
            }
            auto want = (alone[0][i] + alone[1][i]) / 2;
            EXPECT_TRUE(torch::allclose(n.params[i].grad(), want, 1e-6, 1e-7))
                << "rank " << rank << " parameter " << i << " overlap " << overlap << " bucket "
                << bucket_bytes;
          }
        }
      });
    }
  }
}

// Gradients accumulated over micro-batches are averaged once, at the end.
TEST_F(C10dCollectivesTest, AccumulatedGradientsAreAveragedOnce) {
  RunRanks(2, [&](int rank, Collectives& c) {
    Net n = MakeNet();
    auto avg = c.NewGradientAverager(n.params, "test gradients", {});
    ASSERT_TRUE(avg.ok());
    Loss(n, Input(rank)).backward();  // not armed: local accumulation only
    (*avg)->Arm();
    Loss(n, Input(rank) * 2).backward();
    ASSERT_TRUE((*avg)->Finish().ok());
    Net ref = MakeNet();
    for (int r = 0; r < 2; ++r) {
      Loss(ref, Input(r)).backward();
      Loss(ref, Input(r) * 2).backward();
    }
    EXPECT_TRUE(torch::allclose(n.a->weight.grad(), ref.a->weight.grad() / 2, 1e-6, 1e-7));
  });
}

// A rank that stops taking part makes the other fail within the timeout,
// with an error naming the rank and the collective, instead of hanging.
TEST_F(C10dCollectivesTest, AbsentRankFailsTheOtherWithinTheTimeout) {
  std::atomic<bool> rank0_done{false};
  RunRanks(
      2,
      [&](int rank, Collectives& c) {
        Net n = MakeNet();
        auto avg = c.NewGradientAverager(n.params, "test gradients", {});
        ASSERT_TRUE(avg.ok());
        if (rank == 1) {
          while (!rank0_done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          return;
        }
        (*avg)->Arm();
        Loss(n, Input(rank)).backward();
        const auto t0 = std::chrono::steady_clock::now();
        absl::Status s = (*avg)->Finish();
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rank0_done = true;
        EXPECT_FALSE(s.ok());
        EXPECT_TRUE(absl::IsDeadlineExceeded(s) || absl::IsUnavailable(s)) << s;
        EXPECT_THAT(s.message(),
                    HasSubstr("rank 0 of 2: all-reduce of the test gradients (bucket 1 of 1"));
        EXPECT_LT(waited, 60.0) << "bounded by the 2 s timeout, not hanging";
      },
      absl::Seconds(2));
}

TEST_F(C10dCollectivesTest, MissingRendezvousHostFailsWithinTheTimeout) {
  auto c = ConnectCollectives(Options(1, 2, absl::Seconds(2)), torch::kCPU);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("rank 1 of 2: joining the rendezvous at 127.0.0.1:"));
}

}  // namespace
}  // namespace clmae

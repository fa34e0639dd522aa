#include "coordinator/gang_scheduler.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class GangSchedulerTest : public ::testing::Test {
 protected:
  static NodeCapacity Node(const std::string& id, int gpus, int cpus = 0) {
    NodeCapacity n;
    n.worker_id = id;
    n.address = id + ".cluster";
    for (int i = 0; i < gpus; ++i) n.free_cuda.push_back(i);
    for (int i = 0; i < cpus; ++i) n.free_cpu.push_back(i);
    return n;
  }
  PendingJob Job(const std::string& id, int world, std::string kind = "cuda", int priority = 0) {
    return PendingJob{.job_id = id,
                      .priority = priority,
                      .submit_time = absl::FromUnixSeconds(100 + order_),
                      .order = order_++,
                      .world_size = world,
                      .device_kind = std::move(kind)};
  }
  static std::vector<std::string> Workers(const GangPlacement& p) {
    std::vector<std::string> out;
    for (const auto& r : p.placement.ranks()) out.push_back(r.worker_id());
    return out;
  }
  static std::vector<std::string> Ids(const std::vector<GangPlacement>& ps) {
    std::vector<std::string> out;
    for (const auto& p : ps) out.push_back(p.job_id);
    return out;
  }
  int order_ = 0;
  GangScheduler scheduler_{SchedulerOptions{.master_port_min = 29500, .master_port_max = 29502}};
};

TEST_F(GangSchedulerTest, AllRanksOrNone) {
  auto placements = scheduler_.Schedule({Job("big", 5)}, {Node("a", 2), Node("b", 2)});
  EXPECT_THAT(placements, IsEmpty());
  std::vector<NodeCapacity> nodes = {Node("a", 2), Node("b", 2)};
  GangPlacement out;
  EXPECT_FALSE(scheduler_.PlaceOne(Job("big", 5), nodes, out));
  EXPECT_THAT(nodes[0].free_cuda, ElementsAre(0, 1));  // untouched
}

TEST_F(GangSchedulerTest, PrefersTheFullestSingleNodeThatFits) {
  auto placements = scheduler_.Schedule({Job("j", 3)}, {Node("a", 8), Node("b", 3), Node("c", 4)});
  ASSERT_EQ(placements.size(), 1u);
  EXPECT_THAT(Workers(placements[0]), ElementsAre("b", "b", "b"));
  EXPECT_EQ(placements[0].placement.master_addr(), "b.cluster");
  EXPECT_GE(placements[0].placement.master_port(), 29500);
  EXPECT_LE(placements[0].placement.master_port(), 29502);
  EXPECT_EQ(placements[0].placement.ranks(2).device_index(), 2);
  EXPECT_EQ(placements[0].placement.ranks(2).rank(), 2);
}

TEST_F(GangSchedulerTest, SpansTheFewestNodesLargestFirst) {
  auto placements = scheduler_.Schedule({Job("j", 6)}, {Node("a", 2), Node("b", 4), Node("c", 3)});
  ASSERT_EQ(placements.size(), 1u);
  // b (4) then c (2 of 3): two nodes, rank 0 on the largest.
  EXPECT_THAT(Workers(placements[0]), ElementsAre("b", "b", "b", "b", "c", "c"));
  EXPECT_EQ(placements[0].placement.master_addr(), "b.cluster");
}

TEST_F(GangSchedulerTest, PriorityThenSubmitOrderAndNoBackfill) {
  std::vector<PendingJob> pending = {Job("old", 2), Job("urgent", 2, "cuda", 10), Job("needs-4", 4),
                                     Job("small", 1)};
  auto placements = scheduler_.Schedule(pending, {Node("a", 4)});
  // urgent (priority 10) first, then old (earlier submission); nothing is left.
  EXPECT_THAT(Ids(placements), ElementsAre("urgent", "old"));

  // With 5 GPUs: urgent, old, then needs-4 blocks (1 left) and small behind
  // it is not backfilled.
  placements = scheduler_.Schedule(pending, {Node("a", 5)});
  EXPECT_THAT(Ids(placements), ElementsAre("urgent", "old"));
}

TEST_F(GangSchedulerTest, DeviceKindsAreSeparateQueues) {
  std::vector<PendingJob> pending = {Job("gpu-big", 9), Job("cpu-2", 2, "cpu"), Job("gpu-1", 1)};
  auto placements = scheduler_.Schedule(pending, {Node("a", 2, 2)});
  // gpu-big cannot fit and blocks gpu-1, but not the CPU job.
  ASSERT_THAT(Ids(placements), ElementsAre("cpu-2"));
  EXPECT_EQ(placements[0].placement.ranks(1).device_kind(), "cpu");
  EXPECT_EQ(placements[0].placement.ranks(1).device_index(), 1);
  // A CPU job never lands on a GPU-only node.
  EXPECT_THAT(scheduler_.Schedule({Job("cpu-1", 1, "cpu")}, {Node("g", 8)}), IsEmpty());
}

TEST_F(GangSchedulerTest, MasterPortsAreUniquePerNodeAndBounded) {
  auto placements =
      scheduler_.Schedule({Job("a", 1), Job("b", 1), Job("c", 1), Job("d", 1)}, {Node("n", 8)});
  // Range 29500..29502: three jobs get distinct ports; the fourth waits.
  ASSERT_THAT(Ids(placements), ElementsAre("a", "b", "c"));
  std::set<int> ports;
  for (const GangPlacement& p : placements) ports.insert(p.placement.master_port());
  EXPECT_THAT(ports, ElementsAre(29500, 29501, 29502));
  NodeCapacity busy = Node("n", 8);
  busy.used_ports = {29500, 29502};
  placements = scheduler_.Schedule({Job("e", 1)}, {busy});
  ASSERT_EQ(placements.size(), 1u);
  EXPECT_EQ(placements[0].placement.master_port(), 29501);
}

TEST_F(GangSchedulerTest, AJobAvoidsItsRecentPortsWhileOthersAreFree) {
  PendingJob job = Job("j", 1);
  job.avoid_ports = {29500, 29501};
  auto placements = scheduler_.Schedule({job}, {Node("n", 8)});
  ASSERT_EQ(placements.size(), 1u);
  EXPECT_EQ(placements[0].placement.master_port(), 29502);
  // With every other port taken, a recent one is better than waiting.
  NodeCapacity busy = Node("n", 8);
  busy.used_ports = {29502};
  placements = scheduler_.Schedule({job}, {busy});
  ASSERT_EQ(placements.size(), 1u);
  EXPECT_NE(placements[0].placement.master_port(), 29502);
}

TEST_F(GangSchedulerTest, AttemptsOfAJobStartTheirSearchAtDifferentPorts) {
  // The search start is derived from the job id and attempt, so attempts
  // (and coordinators sharing nodes) spread over the range.
  GangScheduler wide{SchedulerOptions{.master_port_min = 20000, .master_port_max = 29999}};
  std::set<int> ports;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    PendingJob job = Job("job-xyz", 1);
    job.attempt = attempt;
    auto placements = wide.Schedule({job}, {Node("n", 8)});
    ASSERT_EQ(placements.size(), 1u);
    ports.insert(placements[0].placement.master_port());
  }
  EXPECT_EQ(ports.size(), 5u);
}

}  // namespace
}  // namespace clmae

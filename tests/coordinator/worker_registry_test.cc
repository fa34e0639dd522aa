#include "coordinator/worker_registry.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class WorkerRegistryTest : public ::testing::Test {
 protected:
  static v1::Register Gpus(const std::string& id, int count, int cpu_slots = 0) {
    v1::Register reg;
    reg.set_worker_id(id);
    reg.set_address(id + ".cluster");
    reg.set_cpu_slots(cpu_slots);
    for (int i = 0; i < count; ++i) {
      v1::Device* d = reg.add_devices();
      d->set_index(i);
      d->set_kind("cuda");
      d->set_name("H100");
    }
    return reg;
  }
  const absl::Time t0_ = absl::FromUnixSeconds(1000);
  WorkerRegistry registry_{WorkerRegistryOptions{.lease = absl::Seconds(10)}};
};

TEST_F(WorkerRegistryTest, RejectsBadRegistrations) {
  v1::Register reg = Gpus("", 1);
  EXPECT_THAT(registry_.Register(reg, t0_).message(), HasSubstr("worker_id"));
  reg = Gpus("a", 2);
  reg.mutable_devices(1)->set_index(0);
  EXPECT_EQ(registry_.Register(reg, t0_).code(), absl::StatusCode::kInvalidArgument);
  reg = Gpus("a", 0, -1);
  EXPECT_THAT(registry_.Register(reg, t0_).message(), HasSubstr("cpu_slots"));
  reg = Gpus("a", 1);
  reg.mutable_devices(0)->set_kind("rocm");
  EXPECT_THAT(registry_.Register(reg, t0_).message(), HasSubstr("rocm"));
  EXPECT_THAT(registry_.List(), IsEmpty());
}

TEST_F(WorkerRegistryTest, LeaseExpiresWithoutHeartbeats) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 1), t0_).ok());
  ASSERT_TRUE(registry_.Register(Gpus("b", 1), t0_).ok());
  ASSERT_TRUE(registry_.Heartbeat("a", t0_ + absl::Seconds(8)).ok());
  EXPECT_THAT(registry_.ExpireLeases(t0_ + absl::Seconds(10)), IsEmpty());  // not yet past
  EXPECT_THAT(registry_.ExpireLeases(t0_ + absl::Seconds(11)), ElementsAre("b"));
  EXPECT_FALSE(registry_.IsAlive("b"));
  EXPECT_EQ(registry_.Get("b")->state(), v1::WORKER_STATE_LOST);
  EXPECT_EQ(registry_.Heartbeat("b", t0_ + absl::Seconds(12)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry_.Heartbeat("nobody", t0_).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(registry_.ExpireLeases(t0_ + absl::Seconds(19)), ElementsAre("a"));
  EXPECT_THAT(registry_.ExpireLeases(t0_ + absl::Seconds(30)), IsEmpty());  // reported once
  // Registering again makes it READY with a fresh lease.
  ASSERT_TRUE(registry_.Register(Gpus("b", 1), t0_ + absl::Seconds(31)).ok());
  EXPECT_TRUE(registry_.IsReady("b"));
}

TEST_F(WorkerRegistryTest, TracksFreeDevicesAndPorts) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 4, 2), t0_).ok());
  const TaskKey r0{"job-1", 1, 0}, r1{"job-1", 1, 1}, other{"job-2", 1, 0};
  ASSERT_TRUE(registry_.Occupy(r0, "a", "cuda", 2, 29500).ok());
  ASSERT_TRUE(registry_.Occupy(r1, "a", "cpu", 1).ok());
  EXPECT_EQ(registry_.Occupy(other, "a", "cuda", 2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(registry_.Occupy(other, "a", "cuda", 0, 29500).message(), HasSubstr("29500"));
  EXPECT_EQ(registry_.Occupy(other, "a", "cuda", 7).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry_.Occupy(other, "a", "cpu", 2).code(), absl::StatusCode::kFailedPrecondition);

  std::vector<NodeCapacity> capacity = registry_.Capacity();
  ASSERT_EQ(capacity.size(), 1u);
  EXPECT_THAT(capacity[0].free_cuda, ElementsAre(0, 1, 3));
  EXPECT_THAT(capacity[0].free_cpu, ElementsAre(0));
  EXPECT_THAT(capacity[0].used_ports, ElementsAre(29500));
  EXPECT_EQ(registry_.Get("a")->free_devices(), 3);
  EXPECT_EQ(registry_.Get("a")->running_tasks_size(), 2);
  EXPECT_TRUE(registry_.AttemptHoldsDevices("job-1", 1));

  EXPECT_TRUE(registry_.Release("a", r0));
  EXPECT_FALSE(registry_.Release("a", r0));
  EXPECT_TRUE(registry_.AttemptHoldsDevices("job-1", 1));  // rank 1 still there
  EXPECT_THAT(registry_.Capacity()[0].used_ports, IsEmpty());
  EXPECT_THAT(registry_.ReleaseWorker("a"), ElementsAre(r1));
  EXPECT_FALSE(registry_.AttemptHoldsDevices("job-1", 1));
  EXPECT_THAT(registry_.Capacity()[0].free_cpu, ElementsAre(0, 1));
}

TEST_F(WorkerRegistryTest, FullWorkersOfferNoCapacityUntilADeviceIsFreed) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 2), t0_).ok());
  ASSERT_TRUE(registry_.Register(Gpus("b", 1), t0_).ok());
  const TaskKey r0{"job-1", 1, 0}, r1{"job-1", 1, 1};
  ASSERT_TRUE(registry_.Occupy(r0, "a", "cuda", 0, 29500).ok());
  ASSERT_TRUE(registry_.Occupy(r1, "a", "cuda", 1).ok());
  std::vector<NodeCapacity> capacity = registry_.Capacity();
  ASSERT_EQ(capacity.size(), 1u);
  EXPECT_EQ(capacity[0].worker_id, "b");
  EXPECT_EQ(registry_.Get("a")->free_devices(), 0);  // still listed as a worker

  EXPECT_TRUE(registry_.Release("a", r1));
  capacity = registry_.Capacity();
  ASSERT_EQ(capacity.size(), 2u);
  EXPECT_EQ(capacity[0].worker_id, "a");
  EXPECT_THAT(capacity[0].free_cuda, ElementsAre(1));
  EXPECT_THAT(capacity[0].used_ports, ElementsAre(29500));
}

TEST_F(WorkerRegistryTest, DrainingAndLostWorkersOfferNoCapacity) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 1), t0_).ok());
  ASSERT_TRUE(registry_.Register(Gpus("b", 1), t0_).ok());
  ASSERT_TRUE(registry_.Register(Gpus("c", 1), t0_).ok());
  ASSERT_TRUE(registry_.SetDraining("a", true).ok());
  registry_.MarkLost("b");
  std::vector<NodeCapacity> capacity = registry_.Capacity();
  ASSERT_EQ(capacity.size(), 1u);
  EXPECT_EQ(capacity[0].worker_id, "c");
  EXPECT_TRUE(registry_.IsAlive("a"));
  EXPECT_EQ(registry_.Occupy({"j", 1, 0}, "b", "cuda", 0).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(registry_.SetDraining("a", false).ok());
  EXPECT_EQ(registry_.Capacity().size(), 2u);
}

TEST_F(WorkerRegistryTest, ReRegisteringForgetsHeldDevices) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 2), t0_).ok());
  ASSERT_TRUE(registry_.Occupy({"j", 1, 0}, "a", "cuda", 0).ok());
  ASSERT_TRUE(registry_.Register(Gpus("a", 2), t0_ + absl::Seconds(1)).ok());
  EXPECT_THAT(registry_.TasksOn("a"), IsEmpty());
  EXPECT_FALSE(registry_.AttemptHoldsDevices("j", 1));
}

// Capacity is maintained as workers change; after any sequence of changes it
// lists exactly the READY workers with room, each with what Get counts free.
TEST_F(WorkerRegistryTest, CapacityStaysInStepWithEveryChange) {
  std::mt19937 rng(7);
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  for (const std::string& id : ids) ASSERT_TRUE(registry_.Register(Gpus(id, 4, 2), t0_).ok());
  absl::Time now = t0_;
  for (int step = 0; step < 2000; ++step) {
    const std::string& id = ids[rng() % ids.size()];
    const TaskKey task{absl::StrCat("job-", rng() % 6), 1, static_cast<int>(rng() % 2)};
    switch (rng() % 9) {
      case 0:
      case 1:
      case 2:
        registry_
            .Occupy(task, id, rng() % 3 ? "cuda" : "cpu", rng() % 4,
                    rng() % 2 ? std::optional<int>(29500 + rng() % 4) : std::nullopt)
            .IgnoreError();
        break;
      case 3:
      case 4:
        registry_.Release(id, task);
        break;
      case 5:
        registry_.SetDraining(id, rng() % 2 == 0).IgnoreError();
        break;
      case 6:
        if (rng() % 4 == 0) registry_.MarkLost(id);
        for (const std::string& w : ids) registry_.Heartbeat(w, now).IgnoreError();
        now += absl::Seconds(1);
        registry_.ExpireLeases(now);
        break;
      case 7:
        ASSERT_TRUE(registry_.Register(Gpus(id, 4, 2), now).ok());
        break;
      case 8:
        registry_.HoldPort(id, 29500 + rng() % 4, now + absl::Seconds(rng() % 3));
        break;
    }
    std::map<std::string, NodeCapacity> listed;
    for (NodeCapacity& n : registry_.Capacity(now)) listed[n.worker_id] = n;
    for (const std::string& w : ids) {
      const v1::Worker worker = *registry_.Get(w);
      const bool room = worker.state() == v1::WORKER_STATE_READY &&
                        (worker.free_devices() > 0 || worker.free_cpu_slots() > 0);
      ASSERT_EQ(listed.contains(w), room) << "step " << step << " worker " << w;
      if (!room) continue;
      EXPECT_EQ(static_cast<int>(listed[w].free_cuda.size()), worker.free_devices());
      EXPECT_EQ(static_cast<int>(listed[w].free_cpu.size()), worker.free_cpu_slots());
      EXPECT_TRUE(std::is_sorted(listed[w].free_cuda.begin(), listed[w].free_cuda.end()));
    }
  }
}

TEST_F(WorkerRegistryTest, HeldPortsCountAsUsedOnlyUntilTheirTime) {
  ASSERT_TRUE(registry_.Register(Gpus("a", 2), t0_).ok());
  registry_.HoldPort("a", 29501, t0_ + absl::Seconds(5));
  EXPECT_THAT(registry_.Capacity(t0_)[0].used_ports, ElementsAre(29501));
  EXPECT_THAT(registry_.Capacity(t0_ + absl::Seconds(6))[0].used_ports, IsEmpty());
  ASSERT_TRUE(registry_.Occupy(TaskKey{"j", 1, 0}, "a", "cuda", 0, 29502).ok());
  EXPECT_THAT(registry_.Capacity(t0_ + absl::Seconds(6))[0].used_ports, ElementsAre(29502));
  EXPECT_THAT(registry_.Capacity(t0_ + absl::Seconds(6))[0].free_cuda, ElementsAre(1));
}

}  // namespace
}  // namespace clmae

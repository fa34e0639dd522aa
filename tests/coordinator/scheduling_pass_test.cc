// Conservative backfill: GangScheduler::Reserve / MayBackfill and the
// SchedulingPass that applies them, unit by unit and on simulated workloads
// (every job runs exactly its estimate).

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/gang_scheduler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

NodeCapacity Node(const std::string& id, int gpus) {
  NodeCapacity n;
  n.worker_id = id;
  n.address = id + ".cluster";
  for (int i = 0; i < gpus; ++i) n.free_cuda.push_back(i);
  return n;
}

// One job of a simulated workload, all submitted at kT0 in this order.
struct SimJob {
  std::string id;
  int world = 1;
  absl::Duration duration;
  int priority = 0;
  bool estimated = true;  // the spec carries the duration as its estimate
};

struct SimResult {
  std::map<std::string, absl::Time> start;
  double utilisation = 0;  // device time used / (devices x makespan)
  absl::Duration mean_wait;
};

// Runs `jobs` on `nodes` x `gpus` devices: a scheduling pass at kT0 and
// whenever a job ends, until every job has run.
SimResult Simulate(const std::vector<SimJob>& jobs, int nodes, int gpus, bool backfill) {
  const GangScheduler scheduler(
      SchedulerOptions{.master_port_min = 20000, .master_port_max = 29999, .backfill = backfill});
  std::map<std::string, std::vector<int>> free;  // node -> free devices
  for (int n = 0; n < nodes; ++n) {
    for (int g = 0; g < gpus; ++g) free[absl::StrCat("n", n)].push_back(g);
  }
  struct Running {
    const SimJob* job;
    absl::Time end;
    v1::Placement placement;
  };
  std::vector<Running> running;
  std::map<std::string, const SimJob*> pending;
  for (const SimJob& job : jobs) pending[job.id] = &job;
  SimResult result;
  absl::Time now = kT0;
  double used = 0;
  int64_t order = 0;
  std::map<std::string, int64_t> orders;
  for (const SimJob& job : jobs) orders[job.id] = order++;
  while (!pending.empty()) {
    std::vector<PendingJob> queue;
    for (const auto& [id, job] : pending) {
      queue.push_back(
          PendingJob{.job_id = id,
                     .priority = job->priority,
                     .submit_time = kT0,
                     .order = orders[id],
                     .world_size = job->world,
                     .device_kind = "cuda",
                     .estimate = job->estimated ? std::optional(job->duration) : std::nullopt});
    }
    std::vector<NodeCapacity> capacity;
    for (const auto& [id, devices] : free) {
      NodeCapacity& node = capacity.emplace_back(Node(id, 0));
      node.free_cuda = devices;
    }
    std::map<std::string, std::vector<RunningJob>> placed;
    for (const Running& r : running) {
      placed["cuda"].push_back(
          RunningJob{.devices = r.job->world,
                     .estimated_end = r.job->estimated ? std::optional(r.end) : std::nullopt});
    }
    for (GangPlacement& p : scheduler.Schedule(queue, capacity, placed, now)) {
      const SimJob* job = pending.at(p.job_id);
      pending.erase(p.job_id);
      result.start[job->id] = now;
      for (const v1::RankPlacement& r : p.placement.ranks()) {
        std::erase(free[r.worker_id()], r.device_index());
      }
      running.push_back(Running{job, now + job->duration, std::move(p.placement)});
      used += job->world * absl::ToDoubleSeconds(job->duration);
    }
    if (running.empty()) break;  // nothing will ever fit
    // Advance to the next end.
    auto next = std::min_element(running.begin(), running.end(),
                                 [](const Running& a, const Running& b) { return a.end < b.end; });
    now = next->end;
    std::erase_if(running, [&](const Running& r) {
      if (r.end > now) return false;
      for (const v1::RankPlacement& rank : r.placement.ranks()) {
        std::vector<int>& devices = free[rank.worker_id()];
        devices.insert(std::upper_bound(devices.begin(), devices.end(), rank.device_index()),
                       rank.device_index());
      }
      return true;
    });
  }
  absl::Time last_end = kT0;
  for (const SimJob& job : jobs) {
    auto started = result.start.find(job.id);
    if (started == result.start.end()) continue;
    last_end = std::max(last_end, started->second + job.duration);
    result.mean_wait += (started->second - kT0) / static_cast<double>(jobs.size());
  }
  result.utilisation = used / (nodes * gpus * absl::ToDoubleSeconds(last_end - kT0));
  return result;
}

PendingJob Pending(const std::string& id, int world, std::optional<absl::Duration> estimate,
                   int priority = 0) {
  static int64_t order = 0;
  return PendingJob{.job_id = id,
                    .priority = priority,
                    .submit_time = kT0,
                    .order = order++,
                    .world_size = world,
                    .device_kind = "cuda",
                    .estimate = estimate};
}

TEST(ReserveTest, StartsAtTheEarliestEndThatFreesEnoughDevices) {
  const std::vector<RunningJob> running = {
      {.devices = 4, .estimated_end = kT0 + absl::Minutes(20)},
      {.devices = 4, .estimated_end = kT0 + absl::Minutes(10)},
      {.devices = 3, .estimated_end = kT0 + absl::Minutes(20)},
  };
  const Reservation r =
      GangScheduler::Reserve(Pending("head", 8, std::nullopt), /*free_now=*/2, running, kT0);
  // 2 free + 4 at minute 10 = 6; + 7 at minute 20 = 13 >= 8.
  EXPECT_EQ(r.start, kT0 + absl::Minutes(20));
  EXPECT_EQ(r.head_devices, 8);
  EXPECT_EQ(r.spare, 5);
}

TEST(ReserveTest, AnEndAlreadyPastCountsAsNow) {
  const Reservation r =
      GangScheduler::Reserve(Pending("head", 4, std::nullopt), 1,
                             {{.devices = 4, .estimated_end = kT0 - absl::Minutes(5)}}, kT0);
  EXPECT_EQ(r.start, kT0);
  EXPECT_EQ(r.spare, 1);
}

TEST(ReserveTest, AJobWithoutAnEstimateMayEndNowButIsNeverCountedOn) {
  const std::vector<RunningJob> running = {
      {.devices = 2, .estimated_end = std::nullopt},
      {.devices = 8, .estimated_end = kT0 + absl::Minutes(10)}};
  const Reservation r = GangScheduler::Reserve(Pending("head", 8, std::nullopt), 4, running, kT0);
  // 4 free + 2 that may end now = 6: the head could start at minute 10 at
  // the earliest, and then 4 + 8 = 12 are free for sure.
  EXPECT_EQ(r.start, kT0 + absl::Minutes(10));
  EXPECT_EQ(r.spare, 4);
}

TEST(ReserveTest, WhenTheUnknownCouldFreeEnoughNowOnlySureSpareDevicesBackfill) {
  const Reservation r = GangScheduler::Reserve(
      Pending("head", 8, std::nullopt), 4, {{.devices = 8, .estimated_end = std::nullopt}}, kT0);
  EXPECT_EQ(r.start, kT0);
  EXPECT_EQ(r.spare, 0);
  // Not even a one-second job: the unknown job could end (and the head
  // start) at any moment.
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("short", 1, absl::Seconds(1)), kT0));
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("unknown", 1, std::nullopt), kT0));
}

TEST(ReserveTest, AHeadLargerThanEverythingHasNoStart) {
  const Reservation r =
      GangScheduler::Reserve(Pending("head", 64, std::nullopt), 4,
                             {{.devices = 8, .estimated_end = kT0 + absl::Minutes(1)}}, kT0);
  EXPECT_EQ(r.start, absl::InfiniteFuture());
  EXPECT_EQ(r.spare, 0);
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("short", 1, absl::Seconds(1)), kT0));
}

TEST(MayBackfillTest, AJobEndingBeforeTheStartOrFittingTheSpareDevices) {
  Reservation r{.start = kT0 + absl::Minutes(10), .head_devices = 8, .spare = 2};
  EXPECT_TRUE(GangScheduler::MayBackfill(r, Pending("ends-first", 6, absl::Minutes(10)), kT0));
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("ends-late", 6, absl::Minutes(11)), kT0));
  EXPECT_TRUE(GangScheduler::MayBackfill(r, Pending("spare-long", 2, absl::Hours(5)), kT0));
  EXPECT_TRUE(GangScheduler::MayBackfill(r, Pending("spare-unknown", 2, std::nullopt), kT0));
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("too-big", 3, std::nullopt), kT0));

  // One ending first leaves the spare devices; one that does not uses them.
  GangScheduler::Backfilled(r, Pending("ends-first", 6, absl::Minutes(10)), kT0);
  EXPECT_EQ(r.spare, 2);
  GangScheduler::Backfilled(r, Pending("spare-unknown", 2, std::nullopt), kT0);
  EXPECT_EQ(r.spare, 0);
  EXPECT_FALSE(GangScheduler::MayBackfill(r, Pending("another", 1, std::nullopt), kT0));
}

TEST(SchedulingPassTest, BackfillsOnlyJobsThatCannotDelayTheHead) {
  const GangScheduler scheduler(SchedulerOptions{});
  std::vector<NodeCapacity> nodes = {Node("a", 4)};
  const std::vector<RunningJob> running = {
      {.devices = 4, .estimated_end = kT0 + absl::Minutes(30)}};
  SchedulingPass pass(
      scheduler, "cuda", nodes, [&] { return running; }, kT0);
  GangPlacement out;
  EXPECT_EQ(pass.Offer(Pending("head", 8, absl::Hours(1)), out), SchedulingPass::Verdict::kSkipped);
  EXPECT_EQ(pass.Offer(Pending("long", 2, absl::Hours(1)), out), SchedulingPass::Verdict::kSkipped);
  EXPECT_EQ(pass.Offer(Pending("unknown", 1, std::nullopt), out),
            SchedulingPass::Verdict::kSkipped);
  ASSERT_EQ(pass.Offer(Pending("short", 3, absl::Minutes(30)), out),
            SchedulingPass::Verdict::kPlaced);
  EXPECT_EQ(out.job_id, "short");
  ASSERT_TRUE(pass.reservation().has_value());
  EXPECT_EQ(pass.reservation()->start, kT0 + absl::Minutes(30));
  EXPECT_EQ(pass.reservation()->spare, 0);
  EXPECT_EQ(pass.Offer(Pending("short-too", 1, absl::Minutes(1)), out),
            SchedulingPass::Verdict::kPlaced);
  // Every device is taken: nothing else can be placed in this pass.
  EXPECT_EQ(pass.Offer(Pending("tiny", 1, absl::Seconds(1)), out), SchedulingPass::Verdict::kDone);
}

TEST(SchedulingPassTest, WithBackfillOffTheFirstJobThatDoesNotFitEndsThePass) {
  const GangScheduler scheduler(SchedulerOptions{.backfill = false});
  std::vector<NodeCapacity> nodes = {Node("a", 4)};
  SchedulingPass pass(
      scheduler, "cuda", nodes, [] { return std::vector<RunningJob>(); }, kT0);
  GangPlacement out;
  EXPECT_EQ(pass.Offer(Pending("head", 8, absl::Minutes(1)), out), SchedulingPass::Verdict::kDone);
}

TEST(SchedulingPassTest, TriesAtMostTheBackfillDepthBehindTheHead) {
  const GangScheduler scheduler(SchedulerOptions{.backfill_depth = 2});
  std::vector<NodeCapacity> nodes = {Node("a", 4)};
  SchedulingPass pass(
      scheduler, "cuda", nodes,
      [] { return std::vector<RunningJob>{{.devices = 4, .estimated_end = kT0}}; }, kT0);
  GangPlacement out;
  EXPECT_EQ(pass.Offer(Pending("head", 8, std::nullopt), out), SchedulingPass::Verdict::kSkipped);
  EXPECT_EQ(pass.Offer(Pending("x", 5, std::nullopt), out), SchedulingPass::Verdict::kSkipped);
  EXPECT_EQ(pass.Offer(Pending("y", 5, std::nullopt), out), SchedulingPass::Verdict::kSkipped);
  EXPECT_EQ(pass.Offer(Pending("z", 1, std::nullopt), out), SchedulingPass::Verdict::kDone);
}

// 32 devices; a 24-device job runs, a 32-device job waits for it; small
// short jobs fill the gap only with backfill.
std::vector<SimJob> GapWorkload() {
  return {{.id = "first", .world = 24, .duration = absl::Minutes(10)},
          {.id = "wide", .world = 32, .duration = absl::Minutes(10)},
          {.id = "s1", .world = 4, .duration = absl::Minutes(5)},
          {.id = "s2", .world = 4, .duration = absl::Minutes(5)},
          {.id = "s3", .world = 4, .duration = absl::Minutes(5)},
          {.id = "s4", .world = 4, .duration = absl::Minutes(5)},
          {.id = "unknown", .world = 2, .duration = absl::Minutes(1), .estimated = false}};
}

TEST(BackfillSimulationTest, TheHeadStartsNoLaterAndTheGapIsUsed) {
  const SimResult strict = Simulate(GapWorkload(), 4, 8, /*backfill=*/false);
  const SimResult backfill = Simulate(GapWorkload(), 4, 8, /*backfill=*/true);
  EXPECT_EQ(strict.start.at("wide"), kT0 + absl::Minutes(10));
  EXPECT_LE(backfill.start.at("wide"), strict.start.at("wide"));
  // The short jobs ran in the gap, two at a time; the one without an
  // estimate could have delayed "wide" and waited for it.
  EXPECT_EQ(backfill.start.at("s1"), kT0);
  EXPECT_EQ(backfill.start.at("s3"), kT0 + absl::Minutes(5));
  EXPECT_EQ(backfill.start.at("unknown"), kT0 + absl::Minutes(20));
  EXPECT_GT(backfill.utilisation, strict.utilisation);
  EXPECT_LT(backfill.mean_wait, strict.mean_wait);
}

TEST(BackfillSimulationTest, PrioritiesAreRespected) {
  const std::vector<SimJob> jobs = {
      {.id = "running", .world = 24, .duration = absl::Minutes(10), .priority = 20},
      {.id = "urgent-wide", .world = 32, .duration = absl::Minutes(10), .priority = 10},
      {.id = "low-long", .world = 8, .duration = absl::Minutes(60), .priority = 0},
      {.id = "low-short", .world = 8, .duration = absl::Minutes(5), .priority = 0},
      {.id = "mid-short", .world = 8, .duration = absl::Minutes(5), .priority = 5}};
  const SimResult strict = Simulate(jobs, 4, 8, false);
  const SimResult backfill = Simulate(jobs, 4, 8, true);
  // The urgent job is not delayed by anything of lower priority.
  EXPECT_EQ(backfill.start.at("urgent-wide"), kT0 + absl::Minutes(10));
  EXPECT_LE(backfill.start.at("urgent-wide"), strict.start.at("urgent-wide"));
  // With room for one short job at a time, the higher priority goes first.
  EXPECT_EQ(backfill.start.at("mid-short"), kT0);
  EXPECT_EQ(backfill.start.at("low-short"), kT0 + absl::Minutes(5));
  EXPECT_GE(backfill.start.at("low-long"), backfill.start.at("urgent-wide"));
}

TEST(BackfillSimulationTest, MixedWorkloadHeadNeverLaterAndUtilisationRises) {
  // A seeded mix: mostly small short jobs, some wide long ones.
  std::mt19937 random(7);
  std::vector<SimJob> jobs;
  for (int i = 0; i < 200; ++i) {
    const bool wide = random() % 5 == 0;
    jobs.push_back(SimJob{
        .id = absl::StrCat("j", i),
        .world = wide ? 16 + static_cast<int>(random() % 17) : 1 + static_cast<int>(random() % 4),
        .duration = absl::Minutes(wide ? 20 + random() % 40 : 1 + random() % 10),
        .estimated = random() % 10 != 0});
  }
  const SimResult strict = Simulate(jobs, 4, 8, false);
  const SimResult backfill = Simulate(jobs, 4, 8, true);
  ASSERT_EQ(strict.start.size(), jobs.size());
  ASSERT_EQ(backfill.start.size(), jobs.size());
  // The first job that has to wait is the first head: backfill never starts
  // it later.
  for (const SimJob& job : jobs) {
    if (strict.start.at(job.id) == kT0) continue;
    EXPECT_LE(backfill.start.at(job.id), strict.start.at(job.id)) << job.id;
    break;
  }
  EXPECT_GT(backfill.utilisation, strict.utilisation);
  EXPECT_LT(backfill.mean_wait, strict.mean_wait);
}

TEST(BackfillSimulationTest, WithoutEstimatesNothingJumpsTheQueue) {
  std::vector<SimJob> jobs = GapWorkload();
  for (SimJob& job : jobs) job.estimated = false;
  const SimResult strict = Simulate(jobs, 4, 8, false);
  const SimResult backfill = Simulate(jobs, 4, 8, true);
  EXPECT_EQ(backfill.start, strict.start);
}

}  // namespace
}  // namespace clmae

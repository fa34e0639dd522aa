#include "worker/agent/agent_metrics.h"

#include <string>

#include "common/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/services/promtool_check.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

v1::Task Task(const std::string& kind, int attempt, int index = 0) {
  v1::Task task;
  task.set_job_id("job-1");
  task.set_attempt(attempt);
  task.set_device_kind(kind);
  task.set_device_index(index);
  return task;
}

class AgentMetricsTest : public ::testing::Test {
 protected:
  std::string Scrape() { return ExpositionText({registry_, metrics_}); }
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::shared_ptr<AgentMetrics> metrics_ = std::make_shared<AgentMetrics>(*registry_, "node-a");
};

TEST_F(AgentMetricsTest, EveryFamilyStartsAtZero) {
  const std::string text = Scrape();
  for (const char* line :
       {"clmae_agent_trainers{state=\"starting\",worker=\"node-a\"} 0",
        "clmae_agent_trainers{state=\"running\",worker=\"node-a\"} 0",
        "clmae_agent_trainer_starts_total{worker=\"node-a\"} 0",
        "clmae_agent_restarts_total{worker=\"node-a\"} 0",
        "clmae_agent_trainer_exits_total{outcome=\"success\",worker=\"node-a\"} 0",
        "clmae_agent_trainer_exits_total{outcome=\"failure\",worker=\"node-a\"} 0",
        "clmae_agent_trainer_exits_total{outcome=\"cancelled\",worker=\"node-a\"} 0",
        "clmae_agent_devices{kind=\"cuda\",state=\"free\",worker=\"node-a\"} 0",
        "clmae_agent_devices{kind=\"cpu\",state=\"busy\",worker=\"node-a\"} 0",
        "clmae_agent_connected{worker=\"node-a\"} 0"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
}

TEST_F(AgentMetricsTest, RanksFromAssignmentToExit) {
  metrics_->SetCapacity(0, 3);
  bool connected = true;
  metrics_->SetConnectedProbe([&] { return connected; });
  metrics_->Assigned(Task("cpu", 1, 0));
  metrics_->Assigned(Task("cpu", 2, 1));
  metrics_->Assigned(Task("cpu", 1, 2));
  std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("clmae_agent_trainers{state=\"starting\",worker=\"node-a\"} 3"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cpu\",state=\"busy\",worker=\"node-a\"} 3"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cpu\",state=\"free\",worker=\"node-a\"} 0"));
  EXPECT_THAT(text, HasSubstr("clmae_agent_connected{worker=\"node-a\"} 1"));

  metrics_->Spawned(Task("cpu", 1, 0));
  metrics_->Spawned(Task("cpu", 2, 1));                             // a restarted job's rank
  metrics_->NotSpawned(Task("cpu", 1, 2), /*reported_exit=*/true);  // e.g. a failed fetch
  metrics_->Exited(Task("cpu", 1, 0), AgentMetrics::Outcome::kSuccess);
  connected = false;
  text = Scrape();
  EXPECT_THAT(text, HasSubstr("clmae_agent_trainers{state=\"starting\",worker=\"node-a\"} 0"));
  EXPECT_THAT(text, HasSubstr("clmae_agent_trainers{state=\"running\",worker=\"node-a\"} 1"));
  EXPECT_THAT(text, HasSubstr("clmae_agent_trainer_starts_total{worker=\"node-a\"} 2"));
  EXPECT_THAT(text, HasSubstr("clmae_agent_restarts_total{worker=\"node-a\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("clmae_agent_trainer_exits_total{outcome=\"success\",worker=\"node-a\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("clmae_agent_trainer_exits_total{outcome=\"failure\",worker=\"node-a\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cpu\",state=\"busy\",worker=\"node-a\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cpu\",state=\"free\",worker=\"node-a\"} 2"));
  EXPECT_THAT(text, HasSubstr("clmae_agent_connected{worker=\"node-a\"} 0"));

  metrics_->Exited(Task("cpu", 2, 1), AgentMetrics::Outcome::kCancelled);
  EXPECT_THAT(Scrape(), HasSubstr("clmae_agent_trainer_exits_total{outcome=\"cancelled\","
                                  "worker=\"node-a\"} 1"));
  metrics_->SetConnectedProbe(nullptr);
}

TEST_F(AgentMetricsTest, CudaDevicesAreCountedApart) {
  metrics_->SetCapacity(8, 0);
  metrics_->Assigned(Task("cuda", 1, 3));
  metrics_->Spawned(Task("cuda", 1, 3));
  const std::string text = Scrape();
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cuda\",state=\"busy\",worker=\"node-a\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cuda\",state=\"free\",worker=\"node-a\"} 7"));
  EXPECT_THAT(text,
              HasSubstr("clmae_agent_devices{kind=\"cpu\",state=\"free\",worker=\"node-a\"} 0"));
}

TEST_F(AgentMetricsTest, PromtoolAcceptsTheExposition) {
  metrics_->SetCapacity(2, 0);
  metrics_->Assigned(Task("cuda", 2, 0));
  metrics_->Spawned(Task("cuda", 2, 0));
  const std::optional<PromtoolResult> checked = PromtoolCheckMetrics(Scrape());
  if (!checked.has_value()) GTEST_SKIP() << "promtool is not on PATH";
  EXPECT_EQ(checked->exit_code, 0) << checked->output;
}

}  // namespace
}  // namespace clmae

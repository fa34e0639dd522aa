#include "coordinator/job_state_machine.h"

#include <set>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

class JobStateMachineTest : public ::testing::Test {
 protected:
  static std::vector<v1::JobState> AllStates() {
    std::vector<v1::JobState> states;
    for (int s = v1::JobState_MIN; s <= v1::JobState_MAX; ++s) {
      states.push_back(static_cast<v1::JobState>(s));
    }
    return states;
  }
  // docs/README.md "Job lifecycle", written out edge by edge.
  const std::set<std::pair<v1::JobState, v1::JobState>> legal_ = {
      {v1::JOB_STATE_PENDING, v1::JOB_STATE_SCHEDULED},
      {v1::JOB_STATE_PENDING, v1::JOB_STATE_CANCELLED},
      // The previous attempt, failed for a late rank, finished after all.
      {v1::JOB_STATE_PENDING, v1::JOB_STATE_SUCCEEDED},
      {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING},
      {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RESTARTING},
      {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_PENDING},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_CANCELLED},
  };
};

TEST_F(JobStateMachineTest, ExactlyTheDocumentedTransitionsAreLegal) {
  for (v1::JobState from : AllStates()) {
    for (v1::JobState to : AllStates()) {
      EXPECT_EQ(IsLegalTransition(from, to), legal_.contains({from, to}))
          << JobStateName(from) << " -> " << JobStateName(to);
      EXPECT_EQ(CheckTransition(from, to).ok(), legal_.contains({from, to}));
    }
  }
}

TEST_F(JobStateMachineTest, IllegalTransitionNamesBothStates) {
  const absl::Status status = CheckTransition(v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("SUCCEEDED"));
  EXPECT_THAT(status.message(), HasSubstr("RUNNING"));
}

TEST_F(JobStateMachineTest, TerminalStatesAndNames) {
  std::set<v1::JobState> terminal;
  for (v1::JobState s : AllStates()) {
    if (IsTerminal(s)) terminal.insert(s);
  }
  EXPECT_EQ(terminal, (std::set<v1::JobState>{v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                                              v1::JOB_STATE_CANCELLED}));
  EXPECT_EQ(JobStateName(v1::JOB_STATE_RESTARTING), "RESTARTING");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(42)), "UNKNOWN(42)");
}

}  // namespace
}  // namespace clmae

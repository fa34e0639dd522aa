#include "worker/agent/task_ledger.h"

#include "absl/strings/str_cat.h"

namespace clmae {

TaskId IdOf(const v1::Task& task) { return {task.job_id(), task.attempt(), task.rank()}; }

std::string TaskName(const TaskId& id) {
  return absl::StrCat("job ", std::get<0>(id), " attempt ", std::get<1>(id), " rank ",
                      std::get<2>(id));
}

void TaskLedger::Started(const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  running_[IdOf(task)] = task;
  if (!attached_) return;
  v1::TaskStatus& status = queue_.emplace_back();
  status.set_job_id(task.job_id());
  status.set_attempt(task.attempt());
  status.set_rank(task.rank());
  status.set_state(v1::TaskStatus::RUNNING);
}

void TaskLedger::Exited(const v1::TaskStatus& status) {
  absl::MutexLock lock(&mu_);
  running_.erase({status.job_id(), status.attempt(), status.rank()});
  queue_.push_back(status);
}

std::vector<v1::Task> TaskLedger::Running() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Task> tasks;
  tasks.reserve(running_.size());
  for (const auto& [id, task] : running_) tasks.push_back(task);
  return tasks;
}

size_t TaskLedger::RunningCount() const {
  absl::MutexLock lock(&mu_);
  return running_.size();
}

void TaskLedger::set_resend_window(absl::Duration window) {
  absl::MutexLock lock(&mu_);
  resend_window_ = window;
}

std::vector<v1::Task> TaskLedger::Attach() {
  absl::MutexLock lock(&mu_);
  attached_ = true;
  interrupted_ = false;
  std::erase_if(queue_,
                [](const v1::TaskStatus& s) { return s.state() == v1::TaskStatus::RUNNING; });
  std::vector<v1::Task> tasks;
  tasks.reserve(running_.size());
  for (const auto& [id, task] : running_) tasks.push_back(task);
  return tasks;
}

std::optional<v1::TaskStatus> TaskLedger::Peek(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return interrupted_ || !queue_.empty(); };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (interrupted_ || queue_.empty()) return std::nullopt;
  return queue_.front();
}

void TaskLedger::Written(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return;
  if (queue_.front().state() == v1::TaskStatus::EXITED) {
    sent_.push_back({std::move(queue_.front()), now});
  }
  queue_.pop_front();
  // Exits written long enough ago on a stream that still works arrived.
  while (!sent_.empty() && now - sent_.front().at > resend_window_) sent_.pop_front();
}

void TaskLedger::Interrupt() {
  absl::MutexLock lock(&mu_);
  interrupted_ = true;
}

void TaskLedger::Detach(absl::Time now) {
  absl::MutexLock lock(&mu_);
  attached_ = false;
  for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
    if (now - it->at <= resend_window_) queue_.push_front(std::move(it->status));
  }
  sent_.clear();
}

bool TaskLedger::WaitDrained(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return queue_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&drained), deadline);
}

}  // namespace clmae

#include "coordinator/outbox.h"

#include <utility>
#include <vector>

namespace clmae {

void Outbox::ToAgent(std::shared_ptr<AgentSink> sink, v1::CoordinatorMessage message) {
  if (sink == nullptr) return;
  const int64_t after = commits_->staged();
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(Item{after, AgentItem{std::move(sink), std::move(message)}});
}

void Outbox::ToWatcher(std::shared_ptr<Watcher> watcher, v1::JobUpdate update,
                       std::shared_ptr<const v1::JobEvent> event) {
  const int64_t after = commits_->staged();
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(Item{after, WatchItem{std::move(watcher), std::move(update), std::move(event)}});
}

void Outbox::Flush() {
  absl::MutexLock deliver(&deliver_mu_);
  const int64_t durable = commits_->durable();
  std::vector<Item> batch;
  {
    absl::MutexLock lock(&queue_mu_);
    // Items are queued in decision order, so their `after` never decreases:
    // the deliverable ones are a prefix.
    while (!queue_.empty() && queue_.front().after <= durable) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (Item& item : batch) {
    if (auto* agent = std::get_if<AgentItem>(&item.what)) {
      agent->sink->Send(agent->message);
      continue;
    }
    auto& watch = std::get<WatchItem>(item.what);
    if (!watch.watcher->active) continue;
    if (watch.event != nullptr) *watch.update.mutable_event() = *watch.event;
    watch.watcher->callback(watch.update);
  }
}

void Outbox::Deactivate(const std::shared_ptr<Watcher>& watcher) {
  absl::MutexLock deliver(&deliver_mu_);
  watcher->active = false;
}

}  // namespace clmae

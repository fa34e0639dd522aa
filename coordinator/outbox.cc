#include "coordinator/outbox.h"

namespace clmae {

void Outbox::ToAgent(std::shared_ptr<AgentSink> sink, v1::CoordinatorMessage message) {
  if (sink == nullptr) return;
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(AgentItem{std::move(sink), std::move(message)});
}

void Outbox::ToWatcher(std::shared_ptr<Watcher> watcher, v1::JobUpdate update) {
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(WatchItem{std::move(watcher), std::move(update)});
}

void Outbox::Flush() {
  absl::MutexLock deliver(&deliver_mu_);
  std::vector<Item> batch;
  {
    absl::MutexLock lock(&queue_mu_);
    batch.swap(queue_);
  }
  for (Item& item : batch) {
    if (auto* agent = std::get_if<AgentItem>(&item)) {
      agent->sink->Send(agent->message);
    } else {
      auto& watch = std::get<WatchItem>(item);
      if (watch.watcher->active) watch.watcher->callback(watch.update);
    }
  }
}

void Outbox::Deactivate(const std::shared_ptr<Watcher>& watcher) {
  absl::MutexLock deliver(&deliver_mu_);
  watcher->active = false;
}

}  // namespace clmae

#pragma once

// Every metric family of clmae-coordinator (docs/metrics.md, "Coordinator").
//
// Counters and histograms are updated at events; the by-state and per-job
// families are built at scrape time (Collect) from a mirror of the jobs that
// this object keeps by watching every job of the Coordinator (snapshots,
// state changes and rank-0 progress arrive through Coordinator::Watch, off
// the domain lock), plus Coordinator::ListWorkers. So the domain keeps no
// metrics bookkeeping of its own and a scrape costs what the scrape
// benchmark (bench/metrics_bench.cc) measures.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clmae/v1/coordinator.pb.h"
#include "coordinator/coordinator.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace clmae {

struct CoordinatorMetricsOptions {
  // Ended jobs keep their per-job series (and count in clmae_coordinator_jobs)
  // this long after they ended, so a dashboard sees a finish or a failure.
  absl::Duration terminal_retention = absl::Hours(1);
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // When each job's newest checkpoint was committed (e.g.
  // Coordinator::LastCheckpointTimes); unset: no checkpoint age series.
  std::function<absl::flat_hash_map<std::string, absl::Time>()> checkpoint_times;
};

// Thread-safe. Register it (it is a Collectable) with the metrics server
// beside `registry`.
class CoordinatorMetrics : public prometheus::Collectable {
 public:
  // Declares the event families in `registry` and starts watching every job
  // of `coordinator` (not owned; it must outlive this object, which stops
  // watching when destroyed). Errors are Coordinator::Watch's.
  static absl::StatusOr<std::shared_ptr<CoordinatorMetrics>> Create(
      Coordinator* coordinator, prometheus::Registry& registry,
      CoordinatorMetricsOptions options = {});
  ~CoordinatorMetrics() override;

  // The by-state and per-job families, as of now.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // One finished RPC: `method` is the bare method name ("SubmitJob").
  void ObserveRpc(const std::string& method, grpc::StatusCode code, double seconds);
  // A server interceptor factory that times every RPC into
  // clmae_coordinator_rpc_duration_seconds (streams: until their status is
  // sent). This object must outlive the server it is installed in.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcInterceptorFactory();

 private:
  struct JobView {
    std::string name;         // the spec's name; empty until known
    std::string device_kind;  // "cuda" or "cpu"; empty until known
    bool details_known = false;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    int restarts = 0;
    bool has_progress = false;
    v1::Progress progress;
    absl::Time pending_since = absl::InfinitePast();  // entered PENDING
    absl::Time ended = absl::InfiniteFuture();        // reached a terminal state
  };

  CoordinatorMetrics(Coordinator* coordinator, prometheus::Registry& registry,
                     CoordinatorMetricsOptions options);
  void OnUpdate(const v1::JobUpdate& update);
  void FillDetails(JobView& view, const v1::Job& job) const;

  // The families Collect builds and fills (defined in the .cc).
  struct ScrapeFamilies;
  // The jobs whose details are not known yet (first seen by their submission
  // event), as Coordinator::Get returns them now: (id, job) for each one it
  // still finds. Takes mu_ only to list them; Get (which takes the domain's
  // lock) runs outside it.
  std::vector<std::pair<std::string, v1::Job>> FetchUnknownJobs() const ABSL_LOCKS_EXCLUDED(mu_);
  // Fills the details of each `fetched` job still mirrored without them.
  void AdoptDetails(const std::vector<std::pair<std::string, v1::Job>>& fetched) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the jobs that ended more than terminal_retention before `now`.
  void ForgetEndedJobs(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Coordinator* const coordinator_;
  const CoordinatorMetricsOptions options_;
  prometheus::Counter& submissions_;
  prometheus::Counter& restarts_;
  prometheus::Counter& failures_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Histogram& scheduling_latency_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  int64_t watch_id_ = 0;

  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, JobView> jobs_ ABSL_GUARDED_BY(mu_);
};

// "OK", "NOT_FOUND", ...: the code names gRPC documents.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace clmae

#include "services/coordinator_metrics.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <utility>

#include "coordinator/job_resources.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/proto_time.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace clmae {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr std::array<v1::JobState, 7> kStates = {v1::JOB_STATE_PENDING,   v1::JOB_STATE_SCHEDULED,
                                                 v1::JOB_STATE_RUNNING,   v1::JOB_STATE_RESTARTING,
                                                 v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                                                 v1::JOB_STATE_CANCELLED};

MetricFamily NewFamily(std::string name, std::string help) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = MetricType::Gauge;
  return family;
}

void AddGauge(MetricFamily& family, Labels labels, double value) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

// Times one call from its creation to the status it sends.
class RpcTimer : public grpc::experimental::Interceptor {
 public:
  RpcTimer(CoordinatorMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}
  ~RpcTimer() override {
    // A call that ended without sending a status (the client went away).
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!recorded_ && methods->QueryInterceptionHookPoint(
                          grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_->ObserveRpc(method_, code, elapsed.count());
  }

  CoordinatorMetrics* const metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

class RpcTimerFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcTimerFactory(CoordinatorMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // "/clmae.v1.Coordinator/SubmitJob" -> "SubmitJob".
    std::string method = info->method() == nullptr ? "unknown" : info->method();
    if (const size_t slash = method.rfind('/'); slash != std::string::npos) {
      method = method.substr(slash + 1);
    }
    return new RpcTimer(metrics_, std::move(method));
  }

 private:
  CoordinatorMetrics* const metrics_;
};

}  // namespace

const char* GrpcCodeName(grpc::StatusCode code) {
  static constexpr std::array<const char*, 17> kNames = {"OK",
                                                         "CANCELLED",
                                                         "UNKNOWN",
                                                         "INVALID_ARGUMENT",
                                                         "DEADLINE_EXCEEDED",
                                                         "NOT_FOUND",
                                                         "ALREADY_EXISTS",
                                                         "PERMISSION_DENIED",
                                                         "RESOURCE_EXHAUSTED",
                                                         "FAILED_PRECONDITION",
                                                         "ABORTED",
                                                         "OUT_OF_RANGE",
                                                         "UNIMPLEMENTED",
                                                         "INTERNAL",
                                                         "UNAVAILABLE",
                                                         "DATA_LOSS",
                                                         "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(kNames.size()) ? kNames[i] : "UNKNOWN";
}

CoordinatorMetrics::CoordinatorMetrics(Coordinator* coordinator, prometheus::Registry& registry,
                                       CoordinatorMetricsOptions options)
    : coordinator_(coordinator),
      options_(std::move(options)),
      submissions_(prometheus::BuildCounter()
                       .Name("clmae_coordinator_submissions_total")
                       .Help("Jobs accepted (a retried request id counts once)")
                       .Register(registry)
                       .Add({})),
      restarts_(prometheus::BuildCounter()
                    .Name("clmae_coordinator_restarts_total")
                    .Help("Job restarts: a failed attempt requeued as the next attempt")
                    .Register(registry)
                    .Add({})),
      failures_(prometheus::BuildCounter()
                    .Name("clmae_coordinator_failures_total")
                    .Help("Attempt failures (a rank failed, hung or was lost)")
                    .Register(registry)
                    .Add({})),
      finished_(prometheus::BuildCounter()
                    .Name("clmae_coordinator_jobs_finished_total")
                    .Help("Jobs that reached a terminal state, by that state")
                    .Register(registry)),
      scheduling_latency_(
          prometheus::BuildHistogram()
              .Name("clmae_coordinator_scheduling_latency_seconds")
              .Help("Time from a job's submission or requeue to its placement")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30,
                                                               60, 300, 900, 3600})),
      rpc_duration_(prometheus::BuildHistogram()
                        .Name("clmae_coordinator_rpc_duration_seconds")
                        .Help("Server-side duration of RPCs by method and status code "
                              "(streams: until they end)")
                        .Register(registry)) {
  for (const char* state : {"succeeded", "failed", "cancelled"}) finished_.Add({{"state", state}});
}

absl::StatusOr<std::shared_ptr<CoordinatorMetrics>> CoordinatorMetrics::Create(
    Coordinator* coordinator, prometheus::Registry& registry, CoordinatorMetricsOptions options) {
  if (!options.clock) options.clock = [] { return absl::Now(); };
  std::shared_ptr<CoordinatorMetrics> metrics(
      new CoordinatorMetrics(coordinator, registry, std::move(options)));
  CoordinatorMetrics* self = metrics.get();
  absl::StatusOr<WatchId> id =
      coordinator->Watch("", [self](const v1::JobUpdate& update) { self->OnUpdate(update); });
  if (!id.ok()) return id.status();
  metrics->watch_id_ = *id;
  return metrics;
}

CoordinatorMetrics::~CoordinatorMetrics() {
  if (watch_id_ != 0) coordinator_->Unwatch(watch_id_);
}

void CoordinatorMetrics::FillDetails(JobView& view, const v1::Job& job) const {
  view.name = job.spec().name();
  absl::StatusOr<JobResources> resources = ResolveJobResources(job.spec());
  view.device_kind = resources.ok() ? resources->device_kind : "unknown";
  view.details_known = true;
}

void CoordinatorMetrics::OnUpdate(const v1::JobUpdate& update) {
  absl::MutexLock lock(&mu_);
  JobView& view = jobs_[update.job_id()];
  switch (update.update_case()) {
    case v1::JobUpdate::kSnapshot: {
      const v1::Job& job = update.snapshot();
      FillDetails(view, job);
      view.state = job.state();
      view.restarts = job.restarts();
      view.has_progress = job.has_progress() && job.progress().has_update_time();
      if (view.has_progress) view.progress = job.progress();
      if (job.state() == v1::JOB_STATE_PENDING)
        view.pending_since = FromProtoTime(job.update_time());
      if (IsTerminal(job.state())) view.ended = FromProtoTime(job.end_time());
      break;
    }
    case v1::JobUpdate::kEvent: {
      const v1::JobEvent& event = update.event();
      const absl::Time at = FromProtoTime(event.time());
      const v1::JobState from = event.from_state();
      const v1::JobState to = event.to_state();
      if (from == v1::JOB_STATE_UNSPECIFIED) submissions_.Increment();
      if (to == v1::JOB_STATE_PENDING) {
        view.pending_since = at;
        if (from == v1::JOB_STATE_RESTARTING) restarts_.Increment();
      }
      if (from == v1::JOB_STATE_PENDING && to == v1::JOB_STATE_SCHEDULED &&
          view.pending_since != absl::InfinitePast()) {
        scheduling_latency_.Observe(absl::ToDoubleSeconds(at - view.pending_since));
      }
      if (IsPlaced(from) && (to == v1::JOB_STATE_RESTARTING || to == v1::JOB_STATE_FAILED)) {
        failures_.Increment();
      }
      if (IsTerminal(to)) {
        view.ended = at;
        finished_.Add({{"state", JobStateLabel(to)}}).Increment();
      }
      view.state = to;
      view.restarts = std::max(0, event.attempt() - 1);
      break;
    }
    case v1::JobUpdate::kProgress:
      view.has_progress = true;
      view.progress = update.progress();
      break;
    default:
      break;
  }
}

void CoordinatorMetrics::ObserveRpc(const std::string& method, grpc::StatusCode code,
                                    double seconds) {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  rpc_duration_.Add({{"method", method}, {"code", GrpcCodeName(code)}}, *kBuckets).Observe(seconds);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CoordinatorMetrics::RpcInterceptorFactory() {
  return std::make_unique<RpcTimerFactory>(this);
}

// The families Collect returns, in that order; a scrape fills them from the
// mirror of the jobs and from the workers.
struct CoordinatorMetrics::ScrapeFamilies {
  MetricFamily jobs = NewFamily("clmae_coordinator_jobs",
                                "Jobs by state: every non-terminal job, and the jobs that ended "
                                "within the retention window (1 h)");
  MetricFamily queue = NewFamily("clmae_coordinator_queue_depth",
                                 "Jobs waiting for a placement (PENDING), by device kind");
  MetricFamily worker_states =
      NewFamily("clmae_coordinator_workers", "Registered workers by state (connected, lost)");
  MetricFamily draining = NewFamily("clmae_coordinator_workers_draining",
                                    "Connected workers that take no new ranks (draining)");
  MetricFamily devices = NewFamily(
      "clmae_coordinator_devices",
      "Devices of connected workers (CUDA devices, CPU slots) by kind and state (free, busy)");
  MetricFamily job_state =
      NewFamily("clmae_job_state", "1 for the job's current state, 0 for the others");
  MetricFamily curriculum = NewFamily("clmae_job_curriculum_factor",
                                      "Curriculum factor lambda_cl of the job's latest report");
  MetricFamily loss = NewFamily("clmae_job_loss", "Loss terms of the job's latest report");
  MetricFamily lr =
      NewFamily("clmae_job_learning_rate", "Learning rate of the job's latest report");
  MetricFamily steps_rate = NewFamily("clmae_job_steps_per_second",
                                      "Iterations per second over the job's latest log window");
  MetricFamily images_rate = NewFamily("clmae_job_images_per_second",
                                       "Images per second (all ranks) over the latest log window");
  MetricFamily progress_ratio =
      NewFamily("clmae_job_progress_ratio", "Iterations done / iterations the run will do");
  MetricFamily step = NewFamily("clmae_job_step", "Iterations done");
  MetricFamily restarts = NewFamily("clmae_job_restarts", "Restarts the job has used");
  MetricFamily quality =
      NewFamily("clmae_job_knn_top1",
                "k-NN top-1 (fraction) of the job's latest evaluation during training, by "
                "feature (class_token, patch_mean)");
  MetricFamily checkpoint_age =
      NewFamily("clmae_job_checkpoint_age_seconds",
                "Seconds since the job's newest committed checkpoint (absent until one exists)");

  // Adds the series of job `id`: its state, restarts, the age of its newest
  // checkpoint (when `checkpoints` has one) and, once it reported progress,
  // the progress series.
  void AddJob(const std::string& id, const JobView& view, absl::Time now,
              const absl::flat_hash_map<std::string, absl::Time>& checkpoints) {
    const Labels labels = {{"job", id}, {"name", view.name}};
    for (v1::JobState state : kStates) {
      Labels with = labels;
      with.push_back({"state", JobStateLabel(state)});
      AddGauge(job_state, std::move(with), state == view.state ? 1 : 0);
    }
    AddGauge(restarts, labels, view.restarts);
    if (auto it = checkpoints.find(id); it != checkpoints.end()) {
      AddGauge(checkpoint_age, labels, absl::ToDoubleSeconds(now - it->second));
    }
    if (view.has_progress) AddProgress(labels, view.progress);
  }

  // Adds the series of one job's latest progress report `p`, under `labels`.
  void AddProgress(const Labels& labels, const v1::Progress& p) {
    AddGauge(curriculum, labels, p.curriculum_factor());
    const std::pair<const char*, double> terms[] = {
        {"mae", p.loss_mae()},     {"masker_recon", p.loss_masker_recon()},
        {"gauss", p.loss_gauss()}, {"kl", p.loss_kl()},
        {"div", p.loss_div()},     {"masker_total", p.loss_masker_total()}};
    for (const auto& [term, value] : terms) {
      Labels with = labels;
      with.push_back({"term", term});
      AddGauge(loss, std::move(with), value);
    }
    AddGauge(lr, labels, p.lr());
    // images_seen counts every iteration's images since step 0, so this is
    // the log window's iteration rate whatever the batch size.
    AddGauge(steps_rate, labels,
             p.images_seen() > 0 ? p.images_per_sec() * p.step() / p.images_seen() : 0);
    AddGauge(images_rate, labels, p.images_per_sec());
    AddGauge(step, labels, p.step());
    if (p.total_steps() > 0) {
      AddGauge(progress_ratio, labels, static_cast<double>(p.step()) / p.total_steps());
    }
    if (p.has_quality()) {
      const std::pair<const char*, double> features[] = {
          {"class_token", p.quality().knn_top1()},
          {"patch_mean", p.quality().knn_top1_patch_mean()}};
      for (const auto& [feature, value] : features) {
        Labels with = labels;
        with.push_back({"feature", feature});
        AddGauge(quality, std::move(with), value);
      }
    }
  }

  // Adds the worker series: registered workers by state, draining workers,
  // and the devices of the connected ones by kind and state.
  void AddWorkers(const std::vector<v1::Worker>& workers) {
    int connected = 0, lost = 0, draining_count = 0;
    int64_t cuda_free = 0, cuda_busy = 0, cpu_free = 0, cpu_busy = 0;
    for (const v1::Worker& w : workers) {
      if (w.state() == v1::WORKER_STATE_LOST) {
        ++lost;
        continue;
      }
      ++connected;
      if (w.state() == v1::WORKER_STATE_DRAINING) ++draining_count;
      cuda_free += w.free_devices();
      cuda_busy += w.devices_size() - w.free_devices();
      cpu_free += w.free_cpu_slots();
      cpu_busy += w.cpu_slots() - w.free_cpu_slots();
    }
    AddGauge(worker_states, {{"state", "connected"}}, connected);
    AddGauge(worker_states, {{"state", "lost"}}, lost);
    AddGauge(draining, {}, draining_count);
    AddGauge(devices, {{"kind", "cuda"}, {"state", "free"}}, cuda_free);
    AddGauge(devices, {{"kind", "cuda"}, {"state", "busy"}}, cuda_busy);
    AddGauge(devices, {{"kind", "cpu"}, {"state", "free"}}, cpu_free);
    AddGauge(devices, {{"kind", "cpu"}, {"state", "busy"}}, cpu_busy);
  }

  // Moves out the families that have a sample, in the declared order (an
  // empty family would print a HELP/TYPE with no sample).
  std::vector<MetricFamily> TakeNonEmpty() {
    std::vector<MetricFamily> out;
    for (MetricFamily* family : {&jobs, &queue, &worker_states, &draining, &devices, &job_state,
                                 &curriculum, &loss, &lr, &steps_rate, &images_rate,
                                 &progress_ratio, &step, &restarts, &quality, &checkpoint_age}) {
      if (!family->metric.empty()) out.push_back(std::move(*family));
    }
    return out;
  }
};

std::vector<MetricFamily> CoordinatorMetrics::Collect() const {
  const absl::Time now = options_.clock();
  const std::vector<std::pair<std::string, v1::Job>> fetched = FetchUnknownJobs();
  const std::vector<v1::Worker> workers = coordinator_->ListWorkers();
  absl::flat_hash_map<std::string, absl::Time> checkpoints;
  if (options_.checkpoint_times) checkpoints = options_.checkpoint_times();

  ScrapeFamilies families;
  absl::flat_hash_map<v1::JobState, int> by_state;
  std::map<std::string, int> pending = {{"cpu", 0}, {"cuda", 0}};
  {
    absl::MutexLock lock(&mu_);
    AdoptDetails(fetched);
    ForgetEndedJobs(now);
    for (const auto& [id, view] : jobs_) {
      ++by_state[view.state];
      if (view.state == v1::JOB_STATE_PENDING) ++pending[view.device_kind];
      families.AddJob(id, view, now, checkpoints);
    }
  }
  for (v1::JobState state : kStates) {
    AddGauge(families.jobs, {{"state", JobStateLabel(state)}}, by_state[state]);
  }
  for (const auto& [kind, count] : pending) {
    AddGauge(families.queue, {{"device_kind", kind}}, count);
  }
  families.AddWorkers(workers);
  std::vector<MetricFamily> out = families.TakeNonEmpty();
  // A counter kept by the checkpoint store, read at scrape time.
  MetricFamily quarantined = NewFamily(
      "clmae_coordinator_checkpoints_quarantined_total",
      "Checkpoints that failed verification (or lost their file) and were quarantined since the "
      "coordinator started");
  quarantined.type = MetricType::Counter;
  ClientMetric count;
  count.counter.value = static_cast<double>(coordinator_->QuarantinedCheckpoints());
  quarantined.metric.push_back(std::move(count));
  out.push_back(std::move(quarantined));
  return out;
}

std::vector<std::pair<std::string, v1::Job>> CoordinatorMetrics::FetchUnknownJobs() const {
  std::vector<std::string> unknown;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, view] : jobs_) {
      if (!view.details_known) unknown.push_back(id);
    }
  }
  std::vector<std::pair<std::string, v1::Job>> fetched;
  for (const std::string& id : unknown) {
    absl::StatusOr<v1::Job> job = coordinator_->Get(id);
    if (job.ok()) fetched.emplace_back(id, *std::move(job));
  }
  return fetched;
}

void CoordinatorMetrics::AdoptDetails(
    const std::vector<std::pair<std::string, v1::Job>>& fetched) const {
  for (const auto& [id, job] : fetched) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && !it->second.details_known) FillDetails(it->second, job);
  }
}

void CoordinatorMetrics::ForgetEndedJobs(absl::Time now) const {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    auto here = it++;
    if (here->second.ended + options_.terminal_retention < now) jobs_.erase(here);
  }
}

}  // namespace clmae

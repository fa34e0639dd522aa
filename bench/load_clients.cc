#include "bench/load_clients.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim_agent_fleet.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace clmae::bench {

v1::JobSpec BenchSpec(int world) {
  v1::JobSpec spec;
  spec.set_name("load-bench");
  (*spec.mutable_labels())["bench"] = "coordinator-load";
  spec.mutable_data()->set_kind(v1::DataSpec::SYNTHETIC);
  spec.mutable_train()->set_device("cuda");
  spec.mutable_train()->set_max_steps(100);
  spec.mutable_resources()->set_world_size(world);
  spec.mutable_resources()->set_device_kind("cuda");
  return spec;
}

// `count` SubmitJob calls (world sizes 1..8, unique request ids) from
// `threads` threads, each on its own connection, back to back.
SubmitRun SubmitMany(const CoordinatorProcess& coordinator, const std::string& token, int count,
                     int threads, const std::string& prefix) {
  SubmitRun run;
  absl::Mutex mu;
  std::vector<std::thread> workers;
  const int64_t start = NowNs();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto stub = v1::Coordinator::NewStub(coordinator.NewChannel());
      std::vector<Submitted> mine;
      int64_t errors = 0;
      std::string first_error;
      for (int i = t; i < count; i += threads) {
        v1::SubmitJobRequest request;
        const int world = 1 + (i * 5) % 8;
        *request.mutable_spec() = BenchSpec(world);
        request.set_request_id(absl::StrCat(prefix, "-", i));
        grpc::ClientContext context;
        context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
        v1::Job job;
        const int64_t sent = NowNs();
        const grpc::Status status = stub->SubmitJob(&context, request, &job);
        const int64_t acked = NowNs();
        if (!status.ok()) {
          if (errors++ == 0) first_error = status.error_message();
          continue;
        }
        mine.push_back(Submitted{job.id(), world, sent, acked});
      }
      absl::MutexLock lock(&mu);
      run.jobs.insert(run.jobs.end(), mine.begin(), mine.end());
      if (run.errors == 0 && errors > 0) run.first_error = first_error;
      run.errors += errors;
    });
  }
  for (std::thread& w : workers) w.join();
  run.seconds = static_cast<double>(NowNs() - start) * 1e-9;
  return run;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * values.size()));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

}  // namespace clmae::bench

#pragma once

// What one clmaectl invocation asks for: the global options and one
// command's options, as ParseCommandLine (command_line.h) fills them. Plain
// structs with defaults; the commands (commands.h) read them and nothing else.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "clmae/v1/job.pb.h"
#include "services/grpc_client.h"

namespace clmae::ctl {

// `-o`: how results are printed.
enum class OutputFormat { kTable, kJson, kYaml };

// Options every command accepts.
struct GlobalOptions {
  OutputFormat output = OutputFormat::kTable;
  // Address, token and TLS files (flags over CLMAE_* environment variables).
  ClientOptions client;
  // Deadline of each unary call; a watch stream has none.
  absl::Duration timeout = absl::Seconds(30);
};

// `clmaectl help [COMMAND]`, `clmaectl COMMAND --help`, `clmaectl --help`.
struct HelpCommand {
  std::string command;  // empty: the overview
};

// `submit -f FILE [--request-id ID]`.
struct SubmitOptions {
  std::string spec_file;
  // The idempotency key; empty: RunSubmit makes a random one and prints it.
  std::string request_id;
};

// `get JOB`.
struct GetOptions {
  std::string job_id;
};

// `list [--state S,...] [--label K=V]... [--limit N]`.
struct ListOptions {
  std::vector<v1::JobState> states;           // empty: every state
  std::map<std::string, std::string> labels;  // every pair must match
  int limit = 0;                              // 0: every matching job
  bool all_owners = false;                    // every owner's (operators); else the caller's
};

// `watch JOB... | --all`.
struct WatchOptions {
  std::vector<std::string> job_ids;
  bool all = false;  // every job, until interrupted
};

// `cancel JOB [--reason TEXT]`.
struct CancelOptions {
  std::string job_id;
  std::string reason;
};

// `workers`.
struct WorkersOptions {};

// `drain NODE [--undo]`.
struct DrainOptions {
  std::string worker_id;
  bool undo = false;
  bool keep_jobs = false;
};

// `checkpoints JOB [--kind K]`.
struct CheckpointsOptions {
  std::string job_id;
  v1::CheckpointKind kind = v1::CHECKPOINT_KIND_UNSPECIFIED;  // every kind
};

// `download JOB [--id ID | --step N | --latest] [--kind K] -o PATH`.
struct DownloadCheckpointOptions {
  std::string job_id;
  // The selector: an id, else a step, else the newest (of `kind`).
  std::string id;
  std::optional<int64_t> step;
  v1::CheckpointKind kind = v1::CHECKPOINT_KIND_UNSPECIFIED;  // the server's default: FULL
  std::string path;  // where the file goes (through PATH.part)
};

using CommandOptions =
    std::variant<HelpCommand, SubmitOptions, GetOptions, ListOptions, WatchOptions, CancelOptions,
                 WorkersOptions, DrainOptions, CheckpointsOptions, DownloadCheckpointOptions>;

// One parsed invocation.
struct CommandLine {
  GlobalOptions global;
  CommandOptions command;
};

}  // namespace clmae::ctl

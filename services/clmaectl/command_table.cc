// The table of clmaectl's commands: synopsis, help text, flags, and how each
// command's arguments become its options struct (ctl_options.h).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/clmaectl/checkpoint_format.h"
#include "services/clmaectl/command_line.h"
#include "services/clmaectl/job_format.h"

namespace clmae::ctl {
namespace {

absl::Status NoMoreArgs(const ParsedArgs& args, size_t allowed) {
  if (args.positional.size() <= allowed) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unexpected argument '", args.positional[allowed], "'"));
}

absl::StatusOr<std::string> OneJobId(const ParsedArgs& args) {
  if (args.positional.empty()) return absl::InvalidArgumentError("missing JOB (a job id)");
  if (absl::Status status = NoMoreArgs(args, 1); !status.ok()) return status;
  return args.positional.front();
}

absl::StatusOr<CommandOptions> BuildHelp(const ParsedArgs& args) {
  if (absl::Status status = NoMoreArgs(args, 1); !status.ok()) return status;
  HelpCommand help;
  if (!args.positional.empty()) {
    help.command = args.positional.front();
    if (FindCommand(help.command) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown command '", help.command, "'"));
    }
  }
  return help;
}

absl::StatusOr<CommandOptions> BuildSubmit(const ParsedArgs& args) {
  if (absl::Status status = NoMoreArgs(args, 0); !status.ok()) return status;
  SubmitOptions options;
  options.spec_file = args.Last("file");
  if (options.spec_file.empty()) {
    return absl::InvalidArgumentError("missing -f FILE (the job spec, YAML; see examples/)");
  }
  options.request_id = args.Last("request-id");
  if (args.Has("request-id") && options.request_id.empty()) {
    return absl::InvalidArgumentError("--request-id is empty");
  }
  if (options.request_id.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat("--request-id has ", options.request_id.size(),
                                                   " characters; at most 128 are allowed"));
  }
  return options;
}

absl::StatusOr<CommandOptions> BuildGet(const ParsedArgs& args) {
  absl::StatusOr<std::string> id = OneJobId(args);
  if (!id.ok()) return id.status();
  return GetOptions{*id};
}

absl::StatusOr<CommandOptions> BuildList(const ParsedArgs& args) {
  if (absl::Status status = NoMoreArgs(args, 0); !status.ok()) return status;
  ListOptions options;
  for (const std::string& value : args.All("state")) {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      std::optional<v1::JobState> state = ParseJobStateName(absl::StripAsciiWhitespace(name));
      if (!state.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--state: unknown state '", name, "'; use any of ",
                         absl::StrJoin(JobStateNames(), ","), " (comma-separated)"));
      }
      options.states.push_back(*state);
    }
  }
  for (const std::string& value : args.All("label")) {
    const size_t eq = value.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label: '", value, "' is not KEY=VALUE (e.g. --label method=clmae)"));
    }
    options.labels[value.substr(0, eq)] = value.substr(eq + 1);
  }
  options.all_owners = args.Has("all");
  if (args.Has("limit")) {
    const std::string text = args.Last("limit");
    if (!absl::SimpleAtoi(text, &options.limit) || options.limit <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--limit: '", text, "' is not a positive number of jobs"));
    }
  }
  return options;
}

absl::StatusOr<CommandOptions> BuildWatch(const ParsedArgs& args) {
  WatchOptions options;
  options.all = args.Has("all");
  options.job_ids = args.positional;
  if (options.all && !options.job_ids.empty()) {
    return absl::InvalidArgumentError("give job ids or --all, not both");
  }
  if (!options.all && options.job_ids.empty()) {
    return absl::InvalidArgumentError("missing JOB... (job ids) or --all");
  }
  return options;
}

absl::StatusOr<CommandOptions> BuildCancel(const ParsedArgs& args) {
  absl::StatusOr<std::string> id = OneJobId(args);
  if (!id.ok()) return id.status();
  return CancelOptions{*id, args.Last("reason")};
}

absl::StatusOr<CommandOptions> BuildWorkers(const ParsedArgs& args) {
  if (absl::Status status = NoMoreArgs(args, 0); !status.ok()) return status;
  return WorkersOptions{};
}

absl::StatusOr<CommandOptions> BuildDrain(const ParsedArgs& args) {
  if (args.positional.empty()) return absl::InvalidArgumentError("missing NODE (a worker id)");
  if (absl::Status status = NoMoreArgs(args, 1); !status.ok()) return status;
  if (args.Has("undo") && args.Has("keep-jobs")) {
    return absl::InvalidArgumentError("--keep-jobs goes with a drain, not with --undo");
  }
  return DrainOptions{args.positional.front(), args.Has("undo"), args.Has("keep-jobs")};
}

absl::StatusOr<v1::CheckpointKind> KindFlag(const ParsedArgs& args) {
  if (!args.Has("kind")) return v1::CHECKPOINT_KIND_UNSPECIFIED;
  const std::string text = args.Last("kind");
  std::optional<v1::CheckpointKind> kind = ParseCheckpointKind(text);
  if (!kind.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("--kind: unknown kind '", text, "'; use ",
                                                   absl::StrJoin(CheckpointKindNames(), ", ")));
  }
  return *kind;
}

absl::StatusOr<CommandOptions> BuildCheckpoints(const ParsedArgs& args) {
  absl::StatusOr<std::string> id = OneJobId(args);
  if (!id.ok()) return id.status();
  absl::StatusOr<v1::CheckpointKind> kind = KindFlag(args);
  if (!kind.ok()) return kind.status();
  return CheckpointsOptions{*id, *kind};
}

absl::StatusOr<CommandOptions> BuildDownload(const ParsedArgs& args) {
  absl::StatusOr<std::string> job_id = OneJobId(args);
  if (!job_id.ok()) return job_id.status();
  DownloadCheckpointOptions options;
  options.job_id = *job_id;
  const int selectors = args.Has("id") + args.Has("step") + args.Has("latest");
  if (selectors > 1) {
    return absl::InvalidArgumentError("give one of --id, --step and --latest, not several");
  }
  if (args.Has("id")) {
    options.id = args.Last("id");
    if (options.id.empty()) return absl::InvalidArgumentError("--id is empty");
    if (args.Has("kind")) {
      return absl::InvalidArgumentError(
          "--kind goes with --step or --latest; an --id names one checkpoint of one kind");
    }
  }
  if (args.Has("step")) {
    const std::string text = args.Last("step");
    int64_t step = 0;
    if (!absl::SimpleAtoi(text, &step) || step < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--step: '", text, "' is not a step (a whole number >= 0)"));
    }
    options.step = step;
  }
  absl::StatusOr<v1::CheckpointKind> kind = KindFlag(args);
  if (!kind.ok()) return kind.status();
  options.kind = *kind;
  options.path = args.Last("out");
  if (options.path.empty()) {
    return absl::InvalidArgumentError("missing -o PATH (the file to write the checkpoint to)");
  }
  return options;
}

}  // namespace

const std::vector<FlagSpec>& GlobalFlags() {
  static const std::vector<FlagSpec>* const kFlags = new std::vector<FlagSpec>{
      {"output", 'o', "FORMAT", "table (default), json or yaml"},
      {"address", 0, "HOST:PORT", "the coordinator (env CLMAE_ADDRESS; default localhost:50051)"},
      {"token", 0, "TOKEN", "bearer token of a user or operator (env CLMAE_TOKEN)"},
      {"tls-ca", 0, "FILE", "CA certificate (PEM); turns TLS on (env CLMAE_TLS_CA)"},
      {"tls-cert", 0, "FILE", "client certificate for mutual TLS (env CLMAE_TLS_CERT)"},
      {"tls-key", 0, "FILE", "client key for mutual TLS (env CLMAE_TLS_KEY)"},
      {"tls-server-name", 0, "NAME",
       "name to check in the server's certificate (env CLMAE_TLS_SERVER_NAME)"},
      {"timeout", 0, "DURATION", "deadline of each request, e.g. 10s, 2m (default 30s)"},
      {"help", 'h', "", "show help"},
  };
  return *kFlags;
}

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec>* const kCommands = new std::vector<CommandSpec>{
      {"submit",
       "-f FILE [--request-id ID]",
       "submit a job spec (YAML)",
       "Checks the spec locally first (errors name the line and column), then submits\n"
       "it. The request id makes retries safe: submitting again with the same id\n"
       "returns the job the first call created instead of a second one. Without\n"
       "--request-id a random one is made and printed.",
       {{"file", 'f', "FILE", "the job spec (see examples/)"},
        {"request-id", 0, "ID", "idempotency key, at most 128 characters"}},
       BuildSubmit},
      {"get",
       "JOB",
       "show one job",
       "Shows a job's state, progress, placement and result.",
       {},
       BuildGet},
      {"list",
       "[--state S,...] [--label K=V]... [--limit N] [--all]",
       "list jobs, newest first",
       "Lists your jobs, newest submission first, paging through the coordinator;\n"
       "with --all, every owner's (an operator's token is needed for that).",
       {{"state", 0, "STATES",
         "only jobs in these states (comma-separated: pending, scheduled, running, restarting, "
         "succeeded, failed, cancelled)",
         true},
        {"label", 0, "KEY=VALUE", "only jobs with this label (repeatable; all must match)", true},
        {"limit", 0, "N", "at most N jobs"},
        {"all", 0, "", "every owner's jobs, not only yours (operators)"}},
       BuildList},
      {"watch",
       "JOB... | --all",
       "follow jobs live until they finish",
       "Shows a live line per job: state, progress, epoch, step, lambda_cl, losses,\n"
       "images/s and ETA (redrawn in place on a terminal, one line per update\n"
       "otherwise). Ends when every job given has finished, printing its result;\n"
       "exits 0 if all SUCCEEDED, else 1. --all follows every job until interrupted.\n"
       "With -o json or -o yaml, prints each update as it arrives.",
       {{"all", 0, "", "every job, until interrupted"}},
       BuildWatch},
      {"cancel",
       "JOB [--reason TEXT]",
       "cancel a job",
       "Stops every rank of the job and ends it CANCELLED. A job that already\n"
       "finished is shown unchanged.",
       {{"reason", 0, "TEXT", "recorded with the job"}},
       BuildCancel},
      {"workers",
       "",
       "list the node agents",
       "Lists the node agents: address, state, devices, free capacity, running\n"
       "tasks and last heartbeat.",
       {},
       BuildWorkers},
      {"drain",
       "NODE [--keep-jobs | --undo]",
       "move work off a node",
       "Stops placing ranks on NODE (a worker id, see 'clmaectl workers') and moves\n"
       "its jobs: their ranks checkpoint at the same step, upload it and stop, and\n"
       "each job is requeued on other nodes as a preemption (not counted against\n"
       "its max_restarts). --keep-jobs only stops placing (running jobs stay).\n"
       "--undo lets the node take ranks again. A drain lasts until undone, across\n"
       "agent restarts.",
       {{"keep-jobs", 0, "", "leave running jobs where they are (a cordon)"},
        {"undo", 0, "", "let the node take ranks again"}},
       BuildDrain},
      {"checkpoints",
       "JOB [--kind full|weights|encoder|preview]",
       "list a job's checkpoints",
       "Lists the checkpoints the coordinator holds for a job, by step, oldest first:\n"
       "id, step, epoch, lambda_cl, MAE loss (and the masker's total), size, kind and\n"
       "when it was committed. Full checkpoints resume training (clmae-train\n"
       "--resume); weights and encoder are safetensors exports; previews are PNGs.",
       {{"kind", 0, "KIND", "only this kind: full, weights, encoder or preview"}},
       BuildCheckpoints},
      {"download",
       "JOB [--id ID | --step N | --latest] [--kind KIND] -o PATH",
       "download a checkpoint",
       "Downloads one checkpoint of a job to PATH: by id, by step, or the newest\n"
       "(--latest, the default), of --kind (default full; not with --id). The bytes\n"
       "go to PATH.part first; an interrupted download of the same checkpoint\n"
       "resumes there when run again. The size and SHA-256 are verified before\n"
       "PATH appears; the verified digest is printed. A progress bar is drawn on a\n"
       "terminal.",
       {{"id", 0, "ID", "the checkpoint with this id (see 'clmaectl checkpoints')"},
        {"step", 0, "N", "the checkpoint written at step N"},
        {"latest", 0, "", "the newest checkpoint (the default)"},
        {"kind", 0, "KIND", "full (default), weights, encoder or preview"},
        {"out", 'o', "PATH", "the file to write (required)"}},
       BuildDownload},
      {"help",
       "[COMMAND]",
       "show help",
       "Shows the overview, or one command's help.",
       {},
       BuildHelp},
  };
  return *kCommands;
}

}  // namespace clmae::ctl

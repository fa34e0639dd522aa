#include "worker/agent/trainer_command.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_io.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace clmae {
namespace {

constexpr size_t kMaxJobIdLength = 128;

bool IsFolderName(const std::string& s) {
  if (s.empty() || s.size() > kMaxJobIdLength || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

}  // namespace

absl::Status ValidateAssignment(const v1::TaskAssignment& task) {
  if (!IsFolderName(task.job_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("job_id: '", task.job_id(),
                     "' is not 1..128 characters of [A-Za-z0-9._-] (it names a folder)"));
  }
  if (task.attempt() < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attempt: ", task.attempt(), " is below 1"));
  }
  if (task.world_size() < 1 || task.rank() < 0 || task.rank() >= task.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("rank: ", task.rank(), " is outside 0..",
                                                   task.world_size() - 1, " (world_size ",
                                                   task.world_size(), ")"));
  }
  if (task.device_kind() != "cuda" && task.device_kind() != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("device_kind: '", task.device_kind(), "' is not \"cuda\" or \"cpu\""));
  }
  if (task.device_index() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device_index: ", task.device_index(), " is negative"));
  }
  if (task.master_addr().empty()) {
    return absl::InvalidArgumentError("master_addr: empty");
  }
  if (task.master_port() < 1 || task.master_port() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("master_port: ", task.master_port(), " is outside 1..65535"));
  }
  return absl::OkStatus();
}

TaskPaths PathsFor(const TrainerCommandOptions& options, const v1::TaskAssignment& task) {
  TaskPaths paths;
  paths.attempt_dir =
      absl::StrCat(options.work_dir, "/", task.job_id(), "/attempt-", task.attempt());
  paths.spec_path = absl::StrCat(paths.attempt_dir, "/job.yaml");
  paths.log_path = absl::StrCat(paths.attempt_dir, "/rank-", task.rank(), ".log");
  return paths;
}

SpawnOptions TrainerCommand(const TrainerCommandOptions& options, const v1::TaskAssignment& task,
                            const std::string& resume_path) {
  const TaskPaths paths = PathsFor(options, task);
  const std::string device = task.device_kind() == "cuda"
                                 ? absl::StrCat("cuda:", task.device_index())
                                 : std::string("cpu");
  SpawnOptions spawn;
  spawn.argv = {options.trainer_path, "--config", paths.spec_path};
  if (!resume_path.empty()) {
    spawn.argv.push_back("--resume");
    spawn.argv.push_back(resume_path);
  }
  spawn.argv.insert(spawn.argv.end(),
                    {"--device", device, "--coordinator", options.coordinator.address, "--job_id",
                     task.job_id(), "--attempt", absl::StrCat(task.attempt())});
  if (options.metrics_port_base >= 0) {
    spawn.argv.push_back("--metrics_port");
    spawn.argv.push_back(absl::StrCat(options.metrics_port_base + task.device_index()));
  }
  spawn.env = {
      {"RANK", absl::StrCat(task.rank())},
      {"WORLD_SIZE", absl::StrCat(task.world_size())},
      {"LOCAL_RANK", absl::StrCat(task.device_index())},
      {"MASTER_ADDR", task.master_addr()},
      {"MASTER_PORT", absl::StrCat(task.master_port())},
      // The task's own credential; a coordinator that issues none
      // leaves the agent's.
      {"CLMAE_TOKEN", task.task_token().empty() ? options.coordinator.token : task.task_token()}};
  const std::pair<const char*, const std::string*> tls[] = {
      {"CLMAE_TLS_CA", &options.coordinator.tls_ca_file},
      {"CLMAE_TLS_CERT", &options.coordinator.tls_cert_file},
      {"CLMAE_TLS_KEY", &options.coordinator.tls_key_file},
      {"CLMAE_TLS_SERVER_NAME", &options.coordinator.tls_server_name}};
  for (const auto& [name, value] : tls) {
    if (!value->empty()) spawn.env.emplace_back(name, *value);
  }
  if (!options.checkpoint_cache_dir.empty()) {
    spawn.env.emplace_back("CLMAE_CHECKPOINT_CACHE", options.checkpoint_cache_dir);
  }
  spawn.output = LogFileOutput{paths.log_path};
  spawn.kill_on_parent_death = true;
  spawn.new_process_group = true;
  return spawn;
}

std::string JobFolder(const TrainerCommandOptions& options, const v1::TaskAssignment& task) {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(options.work_dir, ec);
  if (ec) dir = options.work_dir;
  return (dir.lexically_normal() / task.job_id()).string();
}

namespace {

// `path` with every symlink of its existing part resolved, absolute.
std::filesystem::path Resolved(const std::string& path) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return std::filesystem::path(path).lexically_normal();
  std::filesystem::path resolved = std::filesystem::weakly_canonical(absolute, ec);
  return ec ? absolute.lexically_normal() : resolved;
}

bool Inside(const std::filesystem::path& path, const std::filesystem::path& root) {
  const std::filesystem::path relative = path.lexically_relative(root);
  return !relative.empty() && *relative.begin() != "..";
}

absl::Status CheckUnderRoots(absl::string_view field, const std::string& path,
                             const std::vector<std::string>& roots) {
  if (path.empty()) return absl::OkStatus();
  const std::filesystem::path resolved = Resolved(path);
  for (const std::string& root : roots) {
    if (Inside(resolved, Resolved(root))) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      field, ": '", Clip(path, 200), "'",
      resolved.string() == path ? "" : absl::StrCat(" (", Clip(resolved.string(), 200), ")"),
      " is outside the folders this worker lets jobs read (",
      roots.empty() ? "none" : absl::StrJoin(roots, ", "),
      "); its operator sets them with clmae-worker --data_roots"));
}

}  // namespace

absl::StatusOr<v1::JobSpec> ConfineJobPaths(const TrainerCommandOptions& options,
                                            const v1::TaskAssignment& task) {
  v1::JobSpec spec = task.spec();
  if (absl::Status inside = CheckInsideFolder("output.dir", spec.output().dir()); !inside.ok()) {
    return absl::PermissionDeniedError(inside.message());
  }
  const std::string dir = spec.output().dir().empty() ? "output" : spec.output().dir();
  spec.mutable_output()->set_dir(
      (std::filesystem::path(JobFolder(options, task)) / dir).lexically_normal().string());
  RETURN_IF_ERROR(CheckUnderRoots("data.path", spec.data().path(), options.data_roots));
  RETURN_IF_ERROR(CheckUnderRoots("eval.path", spec.eval().path(), options.data_roots));
  RETURN_IF_ERROR(CheckUnderRoots("train.init_from", spec.train().init_from(), options.data_roots));
  return spec;
}

absl::Status PrepareTaskFiles(const TaskPaths& paths, const v1::JobSpec& spec) {
  std::error_code ec;
  std::filesystem::create_directories(paths.attempt_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", paths.attempt_dir, ": ", ec.message()));
  }
  // Ranks of one attempt on one node share the file: each writes a temporary
  // file of its own and renames it over the final one.
  return WriteFileAtomically(paths.spec_path, JobSpecToYaml(spec));
}

absl::StatusOr<bool> TcpPortBindable(int port) {
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port: ", port, " is outside 1..65535"));
  }
  const std::string what = absl::StrCat("TCP port ", port);
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "opening a socket for", what);
  const int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return ErrnoStatus(errno, "setting SO_REUSEADDR for", what);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  if (errno == EADDRINUSE) return false;
  return ErrnoStatus(errno, "binding", what);
}

std::string LogTail(const std::string& path, int max_lines, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                   ? size - static_cast<std::streamoff>(max_bytes)
                                   : 0;
  in.seekg(start);
  std::string text(static_cast<size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (start > 0 && !lines.empty()) lines.erase(lines.begin());  // a partial first line
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (static_cast<int>(lines.size()) > max_lines) {
    lines.erase(lines.begin(), lines.end() - max_lines);
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace clmae

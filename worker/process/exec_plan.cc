#include "worker/process/exec_plan.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace clmae::process_internal {
namespace {

constexpr absl::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

absl::string_view NameOf(absl::string_view entry) { return entry.substr(0, entry.find('=')); }

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// execvp()'s search: the first executable regular file on `path_list`; if
// none is executable, the first regular file (so execve() reports EACCES).
absl::StatusOr<std::string> FindOnPath(const std::string& program, absl::string_view path_list) {
  std::string not_executable;
  for (absl::string_view dir : absl::StrSplit(path_list, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    if (!IsRegularFile(candidate)) continue;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (not_executable.empty()) not_executable = candidate;
  }
  if (!not_executable.empty()) return not_executable;
  return absl::NotFoundError(
      absl::StrCat("program \"", program, "\" not found on PATH (", path_list, ")"));
}

}  // namespace

absl::StatusOr<ExecPlan> MakeExecPlan(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& overrides,
    const char* const* base_env) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("argv: a program to run is required, got none");
  }
  ExecPlan plan;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (HasNul(argv[i])) {
      return absl::InvalidArgumentError(absl::StrCat("argv[", i, "] contains a NUL character"));
    }
  }
  plan.argv = argv;
  for (const char* const* e = base_env; e != nullptr && *e != nullptr; ++e) {
    plan.envp.emplace_back(*e);
  }
  for (const auto& [name, value] : overrides) {
    if (name.empty() || name.find('=') != std::string::npos || HasNul(name) || HasNul(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("env: \"", absl::CEscape(name),
                       "\" is not a valid variable (a non-empty name without '=' or NUL, "
                       "a value without NUL)"));
    }
    std::string entry = absl::StrCat(name, "=", value);
    bool replaced = false;
    for (std::string& existing : plan.envp) {
      if (NameOf(existing) == name) {
        existing = entry;
        replaced = true;
      }
    }
    if (!replaced) plan.envp.push_back(std::move(entry));
  }
  if (argv[0].find('/') != std::string::npos) {
    plan.path = argv[0];
    return plan;
  }
  absl::string_view path_list = kDefaultPath;
  for (const std::string& entry : plan.envp) {
    if (NameOf(entry) == "PATH") path_list = absl::string_view(entry).substr(5);
  }
  auto found = FindOnPath(argv[0], path_list);
  if (!found.ok()) return found.status();
  plan.path = *std::move(found);
  return plan;
}

std::vector<char*> ToCStringArray(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace clmae::process_internal

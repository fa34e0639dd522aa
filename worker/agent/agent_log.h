#pragma once

// The agent's log: one line per event on stderr, prefixed with the time
// (UTC, to the millisecond) and the program name. Thread-safe (one write()
// per line, so lines of different threads never interleave).

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace clmae {

inline void AgentLog(absl::string_view line) {
  std::string text =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " clmae-worker: ", line, "\n");
  // A failed log write has nowhere to be reported.
  [[maybe_unused]] ssize_t ignored = write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace clmae

#pragma once

// What `clmaectl watch` shows: one live line per job, built from the
// coordinator's stream of JobUpdates. On a terminal the lines are redrawn in
// place (ANSI cursor movement) with state changes printed above them; on
// anything else (a pipe, a file, a CI log) every update prints one line.
// Not thread-safe: the caller serialises Apply.

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clmae/v1/coordinator.pb.h"
#include "clmae/v1/job.pb.h"

namespace clmae::ctl {

// The live line of one job: state, progress bar, epoch e/E, step s/S, λ_cl,
// loss terms, images/s and ETA, e.g.
//   j-1  RUNNING  [########------------]  42%  epoch 3/10  step 420/1000
//   λ_cl +0.200  mae 0.4123 m.rec ...  812.0 img/s  ETA 1m12s
// (one line). The id is padded to `id_width` columns.
std::string WatchLine(const v1::Job& job, int id_width);

class WatchView {
 public:
  // `out` outlives the view. `terminal_width` 0: lines are not cut.
  WatchView(std::ostream& out, bool tty, int terminal_width);

  // Folds `update` into the job it names (a snapshot replaces it, an event
  // sets its state and attempt, progress replaces its progress) and shows it.
  void Apply(const v1::JobUpdate& update);

  // The job as the updates so far describe it; nullptr before any update.
  const v1::Job* Find(absl::string_view job_id) const;

 private:
  v1::Job& JobFor(const std::string& job_id);
  std::string Fit(std::string line) const;
  // Terminal: rewrites the block of live lines, with `notice` (if any) above.
  void Redraw(absl::string_view notice);

  std::ostream& out_;
  const bool tty_;
  const int terminal_width_;
  std::vector<v1::Job> jobs_;                     // in the order first seen
  std::map<std::string, std::string> last_line_;  // per job, off a terminal
  int id_width_ = 0;
  int drawn_lines_ = 0;
};

}  // namespace clmae::ctl

#include "services/clmaectl/watch_view.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/job_progress.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/text_table.h"

namespace clmae::ctl {
namespace {

// Wide enough for every state name, so the bars line up.
constexpr int kStateWidth = 10;
constexpr int kBarWidth = 20;

std::string Pad(absl::string_view text, int width) {
  return absl::StrCat(text, std::string(std::max(0, width - DisplayWidth(text)), ' '));
}

std::string EventNotice(const v1::JobEvent& event, absl::string_view job_id) {
  std::string line =
      absl::StrCat(job_id, ": ", JobStateName(event.from_state()), " -> ",
                   JobStateName(event.to_state()), " (attempt ", event.attempt(), ")");
  if (event.from_state() == v1::JOB_STATE_UNSPECIFIED) {
    line = absl::StrCat(job_id, ": submitted, ", JobStateName(event.to_state()));
  }
  if (!event.message().empty()) absl::StrAppend(&line, ": ", event.message());
  return line;
}

}  // namespace

std::string WatchLine(const v1::Job& job, int id_width) {
  std::string state = JobStateName(job.state());
  if (job.attempt() > 1) absl::StrAppend(&state, " (attempt ", job.attempt(), ")");
  const v1::Progress& p = job.progress();
  if (p.total_steps() <= 0) return absl::StrCat(Pad(job.id(), id_width), "  ", state);
  std::string line = absl::StrCat(Pad(job.id(), id_width), "  ", Pad(state, kStateWidth));
  const double fraction = ProgressFraction(p);
  absl::StrAppendFormat(&line, "  %s %3.0f%%  epoch %s  step %s  λ_cl %s  %s  %.1f img/s",
                        ProgressBar(fraction, kBarWidth), 100 * fraction, FormatEpochs(p),
                        FormatSteps(p), FormatLambda(p.curriculum_factor()), FormatLosses(p),
                        p.images_per_sec());
  if (const std::string quality = FormatQualityShort(p); !quality.empty()) {
    absl::StrAppend(&line, "  ", quality);
  }
  if (!IsTerminal(job.state())) {
    std::optional<absl::Duration> eta = EstimateRemaining(job);
    absl::StrAppend(&line, "  ETA ", eta.has_value() ? ShortDuration(*eta) : "?");
  }
  return line;
}

WatchView::WatchView(std::ostream& out, bool tty, int terminal_width)
    : out_(out), tty_(tty), terminal_width_(terminal_width) {}

v1::Job& WatchView::JobFor(const std::string& job_id) {
  for (v1::Job& job : jobs_) {
    if (job.id() == job_id) return job;
  }
  jobs_.emplace_back().set_id(job_id);
  id_width_ = std::max(id_width_, DisplayWidth(job_id));
  return jobs_.back();
}

const v1::Job* WatchView::Find(absl::string_view job_id) const {
  for (const v1::Job& job : jobs_) {
    if (job.id() == job_id) return &job;
  }
  return nullptr;
}

void WatchView::Apply(const v1::JobUpdate& update) {
  v1::Job& job = JobFor(update.job_id());
  std::string notice;
  switch (update.update_case()) {
    case v1::JobUpdate::kSnapshot:
      job = update.snapshot();
      job.set_id(update.job_id());
      break;
    case v1::JobUpdate::kEvent:
      job.set_state(update.event().to_state());
      job.set_attempt(update.event().attempt());
      notice = EventNotice(update.event(), update.job_id());
      break;
    case v1::JobUpdate::kProgress:
      *job.mutable_progress() = update.progress();
      break;
    case v1::JobUpdate::UPDATE_NOT_SET:
      return;
  }
  if (tty_) {
    Redraw(notice);
  } else if (!notice.empty()) {
    out_ << notice << '\n' << std::flush;
  } else {
    // Keep-alive reports repeat the same progress: print a line only when
    // it says something new.
    std::string line = WatchLine(job, id_width_);
    std::string& last = last_line_[job.id()];
    if (line == last) return;
    last = line;
    out_ << line << '\n' << std::flush;
  }
}

std::string WatchView::Fit(std::string line) const {
  // One column short of the width: a line that fills the last column makes
  // some terminals wrap, and the cursor arithmetic then goes wrong.
  if (terminal_width_ <= 1) return line;
  return TruncateToWidth(line, terminal_width_ - 1);
}

void WatchView::Redraw(absl::string_view notice) {
  std::string text;
  // Back to the first live line: "ESC[nA" moves up n lines.
  if (drawn_lines_ > 0) absl::StrAppend(&text, "\x1b[", drawn_lines_, "A");
  // "\r ESC[2K" clears the line the cursor is on.
  if (!notice.empty()) absl::StrAppend(&text, "\r\x1b[2K", Fit(std::string(notice)), "\n");
  for (const v1::Job& job : jobs_) {
    absl::StrAppend(&text, "\r\x1b[2K", Fit(WatchLine(job, id_width_)), "\n");
  }
  drawn_lines_ = static_cast<int>(jobs_.size());
  out_ << text << std::flush;
}

}  // namespace clmae::ctl

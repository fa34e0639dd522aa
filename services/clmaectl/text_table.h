#pragma once

// Aligned, plain-text columns for `-o table`. Not thread-safe.

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace clmae::ctl {

// Columns a terminal shows for `text`: one per code point (UTF-8 continuation
// bytes do not count), so "λ_cl" is 4 wide. Wide (CJK) characters are not
// special-cased; clmaectl prints none of its own.
int DisplayWidth(absl::string_view text);

// `text` cut to at most `width` columns, never inside a UTF-8 sequence.
std::string TruncateToWidth(absl::string_view text, int width);

// Rows of cells printed with every column as wide as its widest cell, two
// spaces apart, the header first. Trailing spaces are not printed.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);

  // A row with fewer cells than the header is padded with empty ones; more
  // cells than the header is a programming error (the extra ones are
  // dropped).
  void AddRow(std::vector<std::string> cells);

  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace clmae::ctl

#pragma once

// Echoing what a caller sent back in an error message without letting it
// grow the message: a 1 MB job name or a 10 KB id is shown as its first
// characters and its length.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace clmae {

// The longest piece of input an error message repeats.
inline constexpr size_t kMaxEchoedChars = 200;

// `text` itself when it has at most `max` characters (bytes); otherwise its
// first `max` followed by "... (N characters)". Never splits a UTF-8
// sequence.
std::string Clip(absl::string_view text, size_t max = kMaxEchoedChars);

}  // namespace clmae

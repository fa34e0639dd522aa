#pragma once

// The engine's edge between exceptions (LibTorch, the standard library, the
// file system) and absl::Status: nothing thrown leaves the engine.

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "c10/util/Exception.h"

namespace clmae {

// First line of a LibTorch error: its message without the C++ backtrace.
inline std::string ShortTorchMessage(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  if (auto pos = msg.find('\n'); pos != std::string::npos) msg.resize(pos);
  return msg;
}

// Runs `fn` (returning absl::Status or absl::StatusOr<T>) and turns anything it
// throws into an INTERNAL status prefixed with `context` ("phase B backward").
// Out-of-memory errors become RESOURCE_EXHAUSTED.
template <typename Fn>
auto CatchAll(absl::string_view context, Fn&& fn) -> decltype(fn()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": ", ShortTorchMessage(e)));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(context, ": ", ShortTorchMessage(e)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", e.what()));
  }
}

}  // namespace clmae

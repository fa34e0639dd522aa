#pragma once

// The project's RETURN_IF_ERROR / ASSIGN_OR_RETURN helpers, one header for
// every module (docs/conventions.md, "Errors").

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CLMAE_CONCAT_INNER_(a, b) a##b
#define CLMAE_CONCAT_(a, b) CLMAE_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status clmae_status_ = (expr);         \
    if (!clmae_status_.ok()) return clmae_status_; \
  } while (0)

#define CLMAE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from an OK StatusOr, or
// returns its status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  CLMAE_ASSIGN_OR_RETURN_IMPL_(CLMAE_CONCAT_(clmae_statusor_, __LINE__), lhs, expr)

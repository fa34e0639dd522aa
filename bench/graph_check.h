#pragma once

// The CUDA-graph equality check of clmae-bench-engine --check-graphs: a
// graphed run equals an eager one, also after a resume from a checkpoint.

#include <string>

#include "common/model_config.h"

namespace clmae {

// On `device` (CUDA), in fp32, for CL-MAE and plain MAE: 20 iterations
// eagerly; the same 20 with StepOptions::cuda_graphs; and 10 graphed, a
// checkpoint, a fresh model and optimizers loaded from it, 10 more graphed.
// Every loss of the graphed runs must equal the eager run's to 1e-6
// (relative) and the final weights to 1e-6 (absolute). Prints one line per
// comparison and returns the number of failures.
int CheckGraphsAgainstEager(const ModelConfig& config, const std::string& device,
                            const std::string& scratch_dir);

}  // namespace clmae

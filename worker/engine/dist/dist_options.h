#pragma once

// Where a rank is in its job and how it finds the others (torchrun's
// variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace clmae {

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // the CUDA device index on this node ("cuda" → cuda:local_rank)
  // Rank 0 hosts the rendezvous TCPStore at this address and port.
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Bounds rendezvous and every collective: a rank that died or stopped
  // responding makes the others fail within this time instead of hanging.
  absl::Duration timeout = absl::Minutes(5);
  // World size 1 normally skips the process group; benchmarks set this to
  // measure a real one-rank backend (NCCL on one GPU).
  bool connect_single_rank = false;
};

}  // namespace clmae

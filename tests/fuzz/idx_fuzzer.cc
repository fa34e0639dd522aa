// libFuzzer target: the IDX reader (IdxDataset, MNIST and Fashion-MNIST
// files). The first two bytes give the length of the labels file (up to
// 65535 bytes); the labels come next and the images file is the rest. An
// opened dataset must hand out every example it counts.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tests/fuzz/fuzz_files.h"
#include "worker/engine/data/idx_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t labels = std::min<size_t>(size - 2, (size_t{data[0]} << 8) | data[1]);
  const char* bytes = reinterpret_cast<const char*>(data) + 2;
  clmae::fuzz::WriteScratch("t10k-labels-idx1-ubyte", bytes, labels);
  clmae::fuzz::WriteScratch("t10k-images-idx3-ubyte", bytes + labels, size - 2 - labels);
  auto dataset = clmae::IdxDataset::Open(clmae::fuzz::ScratchDir(), "test");
  if (!dataset.ok()) return 0;
  for (int64_t i = 0; i < (*dataset)->size() && i < 64; ++i) {
    if (!(*dataset)->Get(i).ok()) std::abort();
  }
  return 0;
}

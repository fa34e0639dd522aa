#include "worker/engine/train/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "worker/engine/util/json.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

const std::vector<std::pair<std::string, torch::ScalarType>>& DTypes() {
  static const auto* types = new std::vector<std::pair<std::string, torch::ScalarType>>{
      {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"F64", torch::kFloat64}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
      {"I16", torch::kInt16},   {"I8", torch::kInt8},     {"U8", torch::kUInt8},
      {"BOOL", torch::kBool}};
  return *types;
}

absl::StatusOr<std::string> DTypeName(torch::ScalarType t) {
  for (const auto& [name, type] : DTypes()) {
    if (type == t) return name;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors: unsupported dtype ", c10::toString(t)));
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  return CatchAll(absl::StrCat("writing ", path), [&]() -> absl::Status {
    std::vector<torch::Tensor> cpu;
    std::vector<std::string> entries;
    int64_t offset = 0;
    for (const auto& [name, tensor] : tensors) {
      auto t = tensor.detach().to(torch::kCPU).contiguous();
      ASSIGN_OR_RETURN(std::string dtype, DTypeName(t.scalar_type()));
      const int64_t bytes = static_cast<int64_t>(t.nbytes());
      entries.push_back(absl::StrCat(JsonQuote(name), ":{\"dtype\":\"", dtype, "\",\"shape\":[",
                                     absl::StrJoin(t.sizes(), ","), "],\"data_offsets\":[", offset,
                                     ",", offset + bytes, "]}"));
      offset += bytes;
      cpu.push_back(std::move(t));
    }
    if (!metadata.empty()) {
      std::vector<std::string> kv;
      for (const auto& [k, v] : metadata)
        kv.push_back(absl::StrCat(JsonQuote(k), ":", JsonQuote(v)));
      entries.insert(entries.begin(),
                     absl::StrCat("\"__metadata__\":{", absl::StrJoin(kv, ","), "}"));
    }
    std::string header = absl::StrCat("{", absl::StrJoin(entries, ","), "}");
    header.append((8 - header.size() % 8) % 8, ' ');  // align the data to 8 bytes
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    out.reserve(8 + header.size() + static_cast<size_t>(offset));
    out += header;
    for (const auto& t : cpu) out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
    return WriteFileAtomically(path, out);
  });
}

absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid safetensors file: ", what));
  };
  if (bytes.size() < 8) return bad("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) return bad("header length beyond the end of the file");
  auto header = ParseJson(absl::string_view(bytes).substr(8, n));
  if (!header.ok()) return bad(std::string(header.status().message()));
  if (!header->is_object()) return bad("header is not a JSON object");
  const size_t data_start = 8 + n, data_size = bytes.size() - data_start;

  struct Entry {
    size_t begin;
    std::string name;
    torch::Tensor tensor;
  };
  std::vector<Entry> entries;
  for (const auto& [name, info] : header->object()) {
    if (name == "__metadata__") continue;
    if (!info.is_object()) return bad(absl::StrCat("entry '", name, "' is not an object"));
    const auto& obj = info.object();
    auto dtype_it = obj.find("dtype"), shape_it = obj.find("shape"),
         off_it = obj.find("data_offsets");
    if (dtype_it == obj.end() || !dtype_it->second.is_string() || shape_it == obj.end() ||
        !shape_it->second.is_array() || off_it == obj.end() || !off_it->second.is_array() ||
        off_it->second.array().size() != 2) {
      return bad(absl::StrCat("entry '", name, "' lacks dtype, shape or data_offsets"));
    }
    auto type_it = std::find_if(DTypes().begin(), DTypes().end(), [&](const auto& d) {
      return d.first == dtype_it->second.string();
    });
    if (type_it == DTypes().end()) {
      return bad(
          absl::StrCat("entry '", name, "' has unsupported dtype ", dtype_it->second.string()));
    }
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& d : shape_it->second.array()) {
      if (!d.is_number() || d.number() < 0)
        return bad(absl::StrCat("entry '", name, "' has a bad shape"));
      shape.push_back(static_cast<int64_t>(d.number()));
      numel *= shape.back();
    }
    const auto& offs = off_it->second.array();
    if (!offs[0].is_number() || !offs[1].is_number()) return bad("non-numeric data_offsets");
    const auto begin = static_cast<size_t>(offs[0].number()),
               end = static_cast<size_t>(offs[1].number());
    const size_t elem = c10::elementSize(type_it->second);
    if (begin > end || end > data_size || end - begin != static_cast<size_t>(numel) * elem) {
      return bad(absl::StrCat("entry '", name, "' has data_offsets that do not match its shape"));
    }
    auto t = torch::empty(shape, torch::TensorOptions(type_it->second));
    if (numel > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
    entries.push_back({begin, name, std::move(t)});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  NamedTensors out;
  for (auto& e : entries) out.emplace_back(std::move(e.name), std::move(e.tensor));
  return out;
}

}  // namespace clmae

// MessageFromYaml (proto_yaml.h): walks the YAML tree alongside the message
// descriptor, writing proto3 JSON, then parses that JSON with protobuf's own
// parser. Walking with the descriptor is what lets an error name the field
// path and the YAML line; the JSON step keeps protobuf's rules authoritative.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "common/job_spec/proto_yaml.h"
#include "common/job_spec/yaml_scalar.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace clmae {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;

std::string Position(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1);
}

// "path (line L, column C): problem", or without the parts that are unknown.
absl::Status Error(const YAML::Node& at, absl::string_view path, absl::string_view problem) {
  const std::string where = Position(at.Mark());
  std::string prefix(path);
  if (!where.empty()) prefix = prefix.empty() ? where : absl::StrCat(prefix, " (", where, ")");
  return absl::InvalidArgumentError(prefix.empty() ? std::string(problem)
                                                   : absl::StrCat(prefix, ": ", problem));
}

std::string Join(absl::string_view path, absl::string_view name) {
  return path.empty() ? std::string(name) : absl::StrCat(path, ".", name);
}

std::string KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Scalar:
      return absl::StrCat("'", Clip(node.Scalar()), "'");
    default:
      return "nothing";
  }
}

// A quoted or explicitly tagged (`!!str`) scalar is a string, whatever it spells.
bool IsQuoted(const YAML::Node& node) {
  return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str";
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

// Edit distance, for "did you mean".
size_t Distance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string UnknownField(const Descriptor& type, absl::string_view name) {
  std::vector<std::string> names;
  const FieldDescriptor* closest = nullptr;
  size_t best = std::numeric_limits<size_t>::max();
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* field = type.field(i);
    names.push_back(field->name());
    const size_t d = Distance(absl::AsciiStrToLower(name), field->name());
    if (d < best) {
      best = d;
      closest = field;
    }
  }
  if (closest != nullptr && best <= std::max<size_t>(2, closest->name().size() / 3)) {
    return absl::StrCat("unknown field; did you mean ", closest->name(), "?");
  }
  return absl::StrCat("unknown field; the fields of ", type.name(), " are ",
                      absl::StrJoin(names, ", "));
}

std::string EnumNames(const EnumDescriptor& type) {
  std::vector<std::string> names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() != 0) names.push_back(type.value(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

class Converter {
 public:
  absl::Status Message(const YAML::Node& node, const Descriptor& type, const std::string& path,
                       std::string* json);

 private:
  absl::Status Value(const YAML::Node& node, const FieldDescriptor& field, const std::string& path,
                     std::string* json);
  absl::Status Scalar(const YAML::Node& node, const FieldDescriptor& field, const std::string& path,
                      std::string* json);
  absl::Status Map(const YAML::Node& node, const FieldDescriptor& field, const std::string& path,
                   std::string* json);
  absl::Status Sequence(const YAML::Node& node, const FieldDescriptor& field,
                        const std::string& path, std::string* json);
};

absl::Status Converter::Message(const YAML::Node& node, const Descriptor& type,
                                const std::string& path, std::string* json) {
  if (!node.IsMap()) {
    return Error(
        node, path,
        absl::StrCat("expected a mapping of ", type.name(), " fields, got ", KindName(node)));
  }
  std::map<std::string, YAML::Mark> seen;
  std::vector<std::string> members;
  for (const auto& entry : node) {  // a by-value pair of node handles
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) return Error(key, path, "a key must be a plain name");
    const std::string name = key.Scalar();
    const std::string field_path = Join(path, name);
    const FieldDescriptor* field = type.FindFieldByName(name);
    if (field == nullptr) return Error(key, field_path, UnknownField(type, name));
    auto [first, inserted] = seen.emplace(name, key.Mark());
    if (!inserted) {
      return Error(key, field_path,
                   absl::StrCat("duplicate key; first given at ", Position(first->second)));
    }
    if (entry.second.IsNull()) continue;  // unset
    std::string value;
    RETURN_IF_ERROR(Value(entry.second, *field, field_path, &value));
    members.push_back(absl::StrCat(JsonString(name), ":", value));
  }
  *json = absl::StrCat("{", absl::StrJoin(members, ","), "}");
  return absl::OkStatus();
}

absl::Status Converter::Value(const YAML::Node& node, const FieldDescriptor& field,
                              const std::string& path, std::string* json) {
  if (field.is_map()) return Map(node, field, path, json);
  if (field.is_repeated()) return Sequence(node, field, path, json);
  if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return Message(node, *field.message_type(), path, json);
  }
  return Scalar(node, field, path, json);
}

absl::Status Converter::Map(const YAML::Node& node, const FieldDescriptor& field,
                            const std::string& path, std::string* json) {
  if (!node.IsMap()) {
    return Error(node, path, absl::StrCat("expected a mapping, got ", KindName(node)));
  }
  const FieldDescriptor& value_field = *field.message_type()->map_value();
  std::map<std::string, YAML::Mark> seen;
  std::vector<std::string> members;
  for (const auto& entry : node) {  // a by-value pair of node handles
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) return Error(key, path, "a key must be a scalar");
    const std::string entry_path = absl::StrCat(path, ".", key.Scalar());
    auto [first, inserted] = seen.emplace(key.Scalar(), key.Mark());
    if (!inserted) {
      return Error(key, entry_path,
                   absl::StrCat("duplicate key; first given at ", Position(first->second)));
    }
    if (entry.second.IsNull()) return Error(key, entry_path, "expected a value, got nothing");
    std::string value;
    RETURN_IF_ERROR(Value(entry.second, value_field, entry_path, &value));
    members.push_back(absl::StrCat(JsonString(key.Scalar()), ":", value));
  }
  *json = absl::StrCat("{", absl::StrJoin(members, ","), "}");
  return absl::OkStatus();
}

absl::Status Converter::Sequence(const YAML::Node& node, const FieldDescriptor& field,
                                 const std::string& path, std::string* json) {
  if (!node.IsSequence()) {
    return Error(node, path,
                 absl::StrCat("expected a sequence (e.g. [a, b]), got ", KindName(node)));
  }
  std::vector<std::string> items;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string item_path = absl::StrCat(path, "[", i, "]");
    const YAML::Node item = node[i];
    if (item.IsNull()) return Error(node, item_path, "expected a value, got nothing");
    std::string value;
    if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      RETURN_IF_ERROR(Message(item, *field.message_type(), item_path, &value));
    } else {
      RETURN_IF_ERROR(Scalar(item, field, item_path, &value));
    }
    items.push_back(std::move(value));
  }
  *json = absl::StrCat("[", absl::StrJoin(items, ","), "]");
  return absl::OkStatus();
}

template <typename T>
absl::Status Integer(const YAML::Node& node, const std::string& path, std::string* json) {
  constexpr bool kSigned = std::numeric_limits<T>::is_signed;
  const std::string range = absl::StrCat("an integer in [", std::numeric_limits<T>::min(), ", ",
                                         std::numeric_limits<T>::max(), "]");
  if (IsQuoted(node)) {
    return Error(
        node, path,
        absl::StrCat("expected ", range, ", got the quoted string \"", node.Scalar(), "\""));
  }
  bool parsed = false;
  bool in_range = false;
  if constexpr (kSigned) {
    const auto value = ParseYamlInt64(node.Scalar());
    parsed = value.has_value();
    in_range = parsed && *value >= std::numeric_limits<T>::min() &&
               *value <= std::numeric_limits<T>::max();
    if (in_range) *json = absl::StrCat("\"", *value, "\"");
  } else {
    const auto value = ParseYamlUint64(node.Scalar());
    parsed = value.has_value();
    in_range = parsed && *value <= std::numeric_limits<T>::max();
    if (in_range) *json = absl::StrCat("\"", *value, "\"");
  }
  if (!in_range) {
    // A negative number for an unsigned field does not parse but is a range problem.
    const bool number = parsed || ParseYamlInt64(node.Scalar()).has_value();
    return Error(node, path,
                 absl::StrCat("expected ", number ? range : "an integer", ", got '",
                              Clip(node.Scalar()), "'"));
  }
  return absl::OkStatus();
}

absl::Status Converter::Scalar(const YAML::Node& node, const FieldDescriptor& field,
                               const std::string& path, std::string* json) {
  if (!node.IsScalar()) {
    return Error(node, path, absl::StrCat("expected a single value, got ", KindName(node)));
  }
  const std::string& text = node.Scalar();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      *json = JsonString(text);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32:
      return Integer<int32_t>(node, path, json);
    case FieldDescriptor::CPPTYPE_INT64:
      return Integer<int64_t>(node, path, json);
    case FieldDescriptor::CPPTYPE_UINT32:
      return Integer<uint32_t>(node, path, json);
    case FieldDescriptor::CPPTYPE_UINT64:
      return Integer<uint64_t>(node, path, json);
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      const auto value = IsQuoted(node) ? std::nullopt : ParseYamlDouble(text);
      if (!value)
        return Error(node, path, absl::StrCat("expected a number, got '", Clip(text), "'"));
      if (std::isnan(*value)) {
        *json = "\"NaN\"";
      } else if (std::isinf(*value)) {
        *json = *value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
      } else {
        *json = FormatYamlDouble(*value);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const auto value = IsQuoted(node) ? std::nullopt : ParseYamlBool(text);
      if (!value) {
        return Error(node, path, absl::StrCat("expected true or false, got '", Clip(text), "'"));
      }
      *json = *value ? "true" : "false";
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumDescriptor& type = *field.enum_type();
      const std::string name = absl::StrReplaceAll(absl::AsciiStrToUpper(text), {{"-", "_"}});
      if (type.FindValueByName(name) == nullptr) {
        return Error(node, path,
                     absl::StrCat("unknown value '", Clip(text), "'; allowed: ", EnumNames(type)));
      }
      *json = JsonString(name);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return Error(node, path, "unsupported field type");
}

// Where each document of a stream starts, from yaml-cpp's event parser.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
};

// The documents of `text`. YAML::LoadAll is not used: the yaml-cpp of Debian 12
// (0.7) loops forever, allocating, on some malformed streams (a stray ',' at
// the start of a line: yaml-cpp issue #1040, found here by fuzzing), its
// parser reporting an empty document at the same place again and again. So
// the documents are counted with the event parser first, stopping at the
// second one or as soon as a document starts where the previous one did (a
// syntax error there), and only a single document is loaded.
absl::StatusOr<std::vector<YAML::Node>> LoadDocuments(std::string_view text) {
  const std::string owned(text);
  std::vector<YAML::Node> documents;
  try {
    std::istringstream in(owned);
    YAML::Parser parser(in);
    DocumentStarts starts;
    while (starts.starts.size() < 2 && parser.HandleNextDocument(starts)) {
      const std::vector<YAML::Mark>& s = starts.starts;
      if (s.size() == 2 && s[0].pos == s[1].pos) {
        const size_t at = static_cast<size_t>(std::max(0, s[1].pos));
        return absl::InvalidArgumentError(
            absl::StrCat("YAML syntax error at ", Position(s[1]), ": unexpected '",
                         at < owned.size() ? Clip(owned.substr(at, 1)) : std::string(), "'"));
      }
    }
    if (starts.starts.size() > 1) return std::vector<YAML::Node>(2);
    if (starts.starts.empty()) return documents;
    documents.push_back(YAML::Load(owned));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("YAML syntax error at ", Position(e.mark), ": ", e.msg));
  }
  return documents;
}

}  // namespace

absl::Status MessageFromYaml(std::string_view yaml_text, google::protobuf::Message* message) {
  ASSIGN_OR_RETURN(const std::vector<YAML::Node> documents, LoadDocuments(yaml_text));
  message->Clear();
  if (documents.empty() || (documents.size() == 1 && documents[0].IsNull())) {
    return absl::OkStatus();
  }
  if (documents.size() > 1) {
    return absl::InvalidArgumentError(
        "expected one YAML document, got more than one (separated by '---')");
  }
  std::string json;
  try {
    RETURN_IF_ERROR(Converter().Message(documents[0], *message->GetDescriptor(), "", &json));
  } catch (const YAML::Exception& e) {  // yaml-cpp throws on malformed trees
    return absl::InvalidArgumentError(
        absl::StrCat("YAML error at ", Position(e.mark), ": ", e.msg));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) {
    message->Clear();
    return absl::InvalidArgumentError(std::string(status.message()));
  }
  return absl::OkStatus();
}

}  // namespace clmae

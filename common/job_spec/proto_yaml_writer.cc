// MessageToYaml (proto_yaml.h): emits set fields through reflection with
// yaml-cpp's emitter, formatting scalars the way the reader reads them.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/job_spec/proto_yaml.h"
#include "common/job_spec/yaml_scalar.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "yaml-cpp/yaml.h"

namespace clmae {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void EmitString(const std::string& text, YAML::Emitter& out) {
  if (NeedsYamlQuotes(text)) {
    out << YAML::DoubleQuoted << text;
  } else {
    out << text;
  }
}

void EmitMessage(const Message& message, YAML::Emitter& out);

// One value of `field`: element `index` when the field is repeated.
void EmitValue(const Message& message, const FieldDescriptor& field, int index,
               YAML::Emitter& out) {
  const Reflection& r = *message.GetReflection();
  const bool repeated = field.is_repeated();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      EmitString(
          repeated ? r.GetRepeatedString(message, &field, index) : r.GetString(message, &field),
          out);
      return;
    case FieldDescriptor::CPPTYPE_INT32:
      out << (repeated ? r.GetRepeatedInt32(message, &field, index) : r.GetInt32(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      out << (repeated ? r.GetRepeatedInt64(message, &field, index) : r.GetInt64(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      out << (repeated ? r.GetRepeatedUInt32(message, &field, index)
                       : r.GetUInt32(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      out << (repeated ? r.GetRepeatedUInt64(message, &field, index)
                       : r.GetUInt64(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << FormatYamlDouble(repeated ? r.GetRepeatedDouble(message, &field, index)
                                       : r.GetDouble(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
      out << FormatYamlDouble(repeated ? r.GetRepeatedFloat(message, &field, index)
                                       : r.GetFloat(message, &field));
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << ((repeated ? r.GetRepeatedBool(message, &field, index) : r.GetBool(message, &field))
                  ? "true"
                  : "false");
      return;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int number = repeated ? r.GetRepeatedEnumValue(message, &field, index)
                                  : r.GetEnumValue(message, &field);
      const auto* value = field.enum_type()->FindValueByNumber(number);
      // A number this build does not know (an open enum) has no name to write.
      if (value != nullptr) {
        out << value->name();
      } else {
        out << number;
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      EmitMessage(
          repeated ? r.GetRepeatedMessage(message, &field, index) : r.GetMessage(message, &field),
          out);
      return;
  }
}

// A map field as a mapping sorted by key, so output does not depend on
// hash order.
void EmitMap(const Message& message, const FieldDescriptor& field, YAML::Emitter& out) {
  const Reflection& r = *message.GetReflection();
  const FieldDescriptor& key_field = *field.message_type()->map_key();
  const FieldDescriptor& value_field = *field.message_type()->map_value();
  std::vector<std::pair<std::string, const Message*>> entries;
  for (int i = 0; i < r.FieldSize(message, &field); ++i) {
    const Message& entry = r.GetRepeatedMessage(message, &field, i);
    const Reflection& er = *entry.GetReflection();
    std::string key;
    switch (key_field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        key = er.GetString(entry, &key_field);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        key = absl::StrCat(er.GetInt32(entry, &key_field));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        key = absl::StrCat(er.GetInt64(entry, &key_field));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        key = absl::StrCat(er.GetUInt32(entry, &key_field));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        key = absl::StrCat(er.GetUInt64(entry, &key_field));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        key = er.GetBool(entry, &key_field) ? "true" : "false";
        break;
      default:
        break;  // protobuf allows no other key types
    }
    entries.emplace_back(std::move(key), &entry);
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  if (entries.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  for (const auto& [key, entry] : entries) {
    out << YAML::Key;
    EmitString(key, out);
    out << YAML::Value;
    EmitValue(*entry, value_field, -1, out);
  }
  out << YAML::EndMap;
}

void EmitField(const Message& message, const FieldDescriptor& field, YAML::Emitter& out) {
  if (field.is_map()) {
    EmitMap(message, field, out);
    return;
  }
  if (field.is_repeated()) {
    const int size = message.GetReflection()->FieldSize(message, &field);
    // Numbers and names on one line; messages one per block.
    if (field.cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (int i = 0; i < size; ++i) EmitValue(message, field, i, out);
    out << YAML::EndSeq;
    return;
  }
  EmitValue(message, field, -1, out);
}

void EmitMessage(const Message& message, YAML::Emitter& out) {
  const Reflection& r = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  const auto& type = *message.GetDescriptor();
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* field = type.field(i);
    const bool present =
        field->is_repeated() ? r.FieldSize(message, field) > 0 : r.HasField(message, field);
    if (present) fields.push_back(field);
  }
  if (fields.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  for (const FieldDescriptor* field : fields) {
    out << YAML::Key << field->name() << YAML::Value;
    EmitField(message, *field, out);
  }
  out << YAML::EndMap;
}

}  // namespace

std::string MessageToYaml(const google::protobuf::Message& message) {
  YAML::Emitter out;
  out.SetIndent(2);
  EmitMessage(message, out);
  std::string text = out.c_str();
  if (text == "{}") return "";  // the empty document reads back as the empty message
  return text + "\n";
}

}  // namespace clmae

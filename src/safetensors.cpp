// The safetensors format: header parsing with named errors, and header writing.
#include "flatgather/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "check.h"
#include "validate.h"

namespace flatgather {

namespace {

using detail::kMaxBytes;

// A header larger than this is refused before it is read (the reference implementation
// refuses 100 MB too): a corrupt length must not make us parse gigabytes.
constexpr std::int64_t kMaxHeaderBytes = 100'000'000;

struct NameOf {
  DType dtype;
  const char* name;
};
constexpr NameOf kNames[] = {{DType::Float32, "F32"},   {DType::Float16, "F16"},
                             {DType::BFloat16, "BF16"}, {DType::Float64, "F64"},
                             {DType::Int8, "I8"},       {DType::UInt8, "U8"},
                             {DType::Int16, "I16"},     {DType::Int32, "I32"},
                             {DType::Int64, "I64"},     {DType::Bool, "BOOL"}};

// A short rendering of a JSON value for messages (a nested value by its type only).
std::string brief(const nlohmann::json& j) {
  if (j.is_structured()) return std::string("a JSON ") + j.type_name();
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

std::int64_t parse_count(const nlohmann::json& j, const std::string& where) {
  const bool ok =
      (j.is_number_unsigned() && j.get<std::uint64_t>() <= std::uint64_t{kMaxBytes}) ||
      (j.is_number_integer() && j.get<std::int64_t>() >= 0 && j.get<std::int64_t>() <= kMaxBytes);
  FG_CHECK(ok, "safetensors: " << where << " must be a non-negative integer (at most 2^62), got "
                               << brief(j));
  return j.get<std::int64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& j,
                             std::int64_t data_bytes) {
  const std::string where = "tensor '" + name + "'";
  FG_CHECK(j.is_object(), "safetensors: " << where << " must be a JSON object, got " << brief(j));
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    FG_CHECK(j.contains(key), "safetensors: " << where << " has no \"" << key << "\"");
  }
  SafetensorsEntry e;
  e.name = name;
  const nlohmann::json& dtype = j.at("dtype");
  FG_CHECK(dtype.is_string(), "safetensors: " << where << " has dtype " << brief(dtype)
                                              << "; expected a string such as \"F32\"");
  const auto parsed = dtype_from_safetensors_name(dtype.get<std::string>());
  FG_CHECK(parsed.has_value(), "safetensors: " << where << " has dtype " << brief(dtype)
                                               << ", which flatgather does not support; "
                                                  "supported: F32, F16, BF16, F64, I8, U8, "
                                                  "I16, I32, I64, BOOL");
  e.dtype = *parsed;
  const nlohmann::json& shape = j.at("shape");
  FG_CHECK(shape.is_array(), "safetensors: " << where << " has shape " << brief(shape)
                                             << "; expected an array of sizes");
  std::int64_t bytes = dtype_size(e.dtype);
  for (std::size_t d = 0; d < shape.size(); ++d) {
    const std::int64_t s = parse_count(shape[d], where + " size " + std::to_string(d));
    FG_CHECK(s == 0 || bytes <= kMaxBytes / s,
             "safetensors: " << where << " is too large: its byte size overflows 2^62");
    bytes = s == 0 ? 0 : bytes * s;
    e.shape.push_back(s);
  }
  const nlohmann::json& offsets = j.at("data_offsets");
  FG_CHECK(offsets.is_array() && offsets.size() == 2,
           "safetensors: " << where << " has data_offsets " << brief(offsets)
                           << "; expected [begin, end]");
  e.begin = parse_count(offsets[0], where + " data_offsets[0]");
  e.end = parse_count(offsets[1], where + " data_offsets[1]");
  FG_CHECK(e.begin <= e.end && e.end <= data_bytes,
           "safetensors: " << where << " has data_offsets [" << e.begin << ", " << e.end
                           << "] outside the data section of " << data_bytes
                           << " bytes (a truncated file, or a corrupt header)");
  FG_CHECK(e.end - e.begin == bytes,
           "safetensors: " << where << " has " << e.end - e.begin << " bytes in data_offsets but "
                           << bytes << " by its shape and dtype " << dtype.get<std::string>());
  return e;
}

}  // namespace

const SafetensorsEntry* SafetensorsHeader::find(const std::string& name) const {
  for (const SafetensorsEntry& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const char* safetensors_dtype_name(DType t) {
  for (const NameOf& n : kNames) {
    if (n.dtype == t) return n.name;
  }
  return "unknown";
}

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
  for (const NameOf& n : kNames) {
    if (name == n.name) return n.dtype;
  }
  return std::nullopt;
}

SafetensorsHeader parse_safetensors(const unsigned char* file, std::int64_t size) {
  FG_CHECK(size >= 8, "safetensors: the file has " << size
                                                   << " bytes, fewer than the 8-byte header "
                                                      "length (a truncated or empty file)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];  // little-endian
  FG_CHECK(n <= static_cast<std::uint64_t>(kMaxHeaderBytes),
           "safetensors: the header length is " << n << " bytes, more than the " << kMaxHeaderBytes
                                                << " allowed (not a safetensors file?)");
  FG_CHECK(static_cast<std::int64_t>(n) <= size - 8,
           "safetensors: the header length is " << n << " bytes but the file has only " << size - 8
                                                << " after it (a truncated file)");
  SafetensorsHeader h;
  h.data_offset = 8 + static_cast<std::int64_t>(n);
  h.data_bytes = size - h.data_offset;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(file + 8, file + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    FG_CHECK(false, "safetensors: the header is not valid JSON: " << e.what());
  }
  FG_CHECK(j.is_object(), "safetensors: the header must be a JSON object, got " << brief(j));
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      FG_CHECK(value.is_object(),
               "safetensors: __metadata__ must be an object of strings, got " << brief(value));
      for (const auto& [mkey, mvalue] : value.items()) {
        FG_CHECK(mvalue.is_string(), "safetensors: __metadata__ '"
                                         << mkey << "' must be a string, got " << brief(mvalue));
        h.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(key, value, h.data_bytes));
  }
  // Packed: sorted by begin, each entry starts where the previous one ended, the last ends
  // at the end of the file. Empty tensors take no bytes and may sit anywhere in order.
  std::stable_sort(h.entries.begin(), h.entries.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::int64_t pos = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : h.entries) {
    if (e.begin == e.end) continue;
    FG_CHECK(e.begin >= pos, "safetensors: tensors '" << previous->name << "' and '" << e.name
                                                      << "' overlap in the data section (bytes ["
                                                      << e.begin << ", " << pos << "))");
    FG_CHECK(e.begin == pos, "safetensors: bytes [" << pos << ", " << e.begin
                                                    << ") of the data section belong to no "
                                                       "tensor (a hole before '"
                                                    << e.name << "'); the format forbids holes");
    pos = e.end;
    previous = &e;
  }
  FG_CHECK(pos == h.data_bytes, "safetensors: the data section has "
                                    << h.data_bytes << " bytes but its tensors end at byte " << pos
                                    << " (trailing bytes; the format forbids holes)");
  return h;
}

std::string format_safetensors_header(const std::vector<SafetensorsEntry>& entries,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  for (const SafetensorsEntry& e : entries) {
    FG_CHECK(e.name != "__metadata__" && !j.contains(e.name),
             "safetensors: tensor name '"
                 << e.name << "' " << (e.name == "__metadata__" ? "is reserved" : "appears twice")
                 << "; every tensor needs its own name");
    nlohmann::ordered_json je;
    je["dtype"] = safetensors_dtype_name(e.dtype);
    je["shape"] = e.shape;
    je["data_offsets"] = {e.begin, e.end};
    j[e.name] = std::move(je);
  }
  std::string json = j.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data section 8-byte aligned in the file
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + json;
}

}  // namespace flatgather

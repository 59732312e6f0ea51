// Manifest: Layout <-> JSON, through nlohmann::json.
#include <nlohmann/json.hpp>

#include "check.h"
#include "flatgather/layout.h"
#include "validate.h"

namespace flatgather {

namespace {
constexpr const char* kFormat = "flatgather.layout/1";
using detail::kMaxBytes;

// A short rendering of a JSON value for error messages: scalars as written (cut at 64
// characters), arrays and objects by their type. dump() of a deeply nested value recurses
// once per level and could make a message of any size.
std::string brief(const nlohmann::json& j) {
  if (j.is_structured()) return std::string("a JSON ") + j.type_name();
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

DType parse_dtype(const nlohmann::json& j, const std::string& where) {
  FG_CHECK(j.is_string(),
           "manifest: " << where << " must be a dtype name string, got " << brief(j));
  const std::string name = j.get<std::string>();
  const auto dtype = dtype_from_name(name);
  FG_CHECK(dtype.has_value(), "manifest: " << where << " has unknown dtype '" << name
                                           << "'; valid: " << dtype_valid_names());
  return *dtype;
}

// Integers in [0, 2^62], so that sums of an offset and a count, and byte sizes of counts
// checked against 2^62, cannot overflow.
std::int64_t parse_int(const nlohmann::json& j, const std::string& where) {
  const bool ok =
      (j.is_number_unsigned() && j.get<std::uint64_t>() <= std::uint64_t{kMaxBytes}) ||
      (j.is_number_integer() && j.get<std::int64_t>() >= 0 && j.get<std::int64_t>() <= kMaxBytes);
  FG_CHECK(ok, "manifest: " << where << " must be a non-negative integer (at most 2^62), got "
                            << brief(j));
  return j.get<std::int64_t>();
}

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  FG_CHECK(j.is_object() && j.contains(key), "manifest: " << where << " has no \"" << key << "\"");
  return j.at(key);
}
}  // namespace

std::string Layout::to_json(int indent) const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["flat_dtype"] = dtype_name(flat_dtype_);
  j["numel"] = numel_;
  j["align_bytes"] = align_bytes_;
  nlohmann::ordered_json segments = nlohmann::ordered_json::array();
  for (const Segment& s : segments_) {
    nlohmann::ordered_json js;
    js["name"] = s.name;
    js["dtype"] = dtype_name(s.dtype);
    js["shape"] = s.shape;
    js["offset"] = s.offset;
    js["numel"] = s.numel;
    js["aliases"] = s.aliases;
    segments.push_back(std::move(js));
  }
  j["segments"] = std::move(segments);
  try {
    return j.dump(indent);
  } catch (const nlohmann::json::type_error& e) {  // a name that is not valid UTF-8
    FG_CHECK(false, "manifest: cannot write the layout as JSON (" << e.what()
                                                                  << "); tensor names must be "
                                                                     "valid UTF-8");
  }
  return {};
}

Layout Layout::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    FG_CHECK(false, "manifest is not valid JSON (byte " << e.byte << "): " << e.what());
  } catch (const nlohmann::json::exception& e) {  // e.g. a number that overflows a double
    FG_CHECK(false, "manifest is not valid JSON: " << e.what());
  }
  FG_CHECK(j.is_object(), "manifest must be a JSON object, got " << j.type_name());
  const auto& format = field(j, "format", "the manifest");
  FG_CHECK(format.is_string() && format.get<std::string>() == kFormat,
           "manifest: unknown \"format\" " << brief(format) << "; expected \"" << kFormat << "\"");
  const DType flat_dtype = parse_dtype(field(j, "flat_dtype", "the manifest"), "\"flat_dtype\"");
  const std::int64_t numel = parse_int(field(j, "numel", "the manifest"), "\"numel\"");
  FG_CHECK(numel <= kMaxBytes / dtype_size(flat_dtype),
           "manifest: \"numel\" " << numel << " of " << dtype_name(flat_dtype)
                                  << " overflows 2^62 bytes");
  const std::int64_t align =
      j.contains("align_bytes") ? parse_int(j["align_bytes"], "\"align_bytes\"") : 0;
  FG_CHECK((align & (align - 1)) == 0,
           "manifest: \"align_bytes\" must be 0 or a power of two, got " << align);
  const auto& jsegments = field(j, "segments", "the manifest");
  FG_CHECK(jsegments.is_array(), "manifest: \"segments\" must be an array");

  std::vector<Segment> segments;
  std::int64_t end = 0;
  for (std::size_t i = 0; i < jsegments.size(); ++i) {
    const auto& js = jsegments[i];
    const std::string where = "segment " + std::to_string(i);
    Segment s;
    const auto& name = field(js, "name", where);
    FG_CHECK(name.is_string(), "manifest: " << where << " \"name\" must be a string");
    s.name = name.get<std::string>();
    const std::string named = where + " ('" + s.name + "')";
    s.dtype = parse_dtype(field(js, "dtype", named), named + " \"dtype\"");
    const auto& shape = field(js, "shape", named);
    FG_CHECK(shape.is_array(), "manifest: " << named << " \"shape\" must be an array");
    std::int64_t n = 1;
    for (const auto& d : shape) {
      const std::int64_t size = parse_int(d, named + " \"shape\" entry");
      FG_CHECK(size == 0 || n <= (std::int64_t{1} << 62) / size,
               "manifest: " << named << " shape overflows 64-bit element counts");
      s.shape.push_back(size);
      n *= size;
    }
    s.offset = parse_int(field(js, "offset", named), named + " \"offset\"");
    s.numel = parse_int(field(js, "numel", named), named + " \"numel\"");
    FG_CHECK(s.numel == n, "manifest: " << named << " has numel " << s.numel
                                        << " but its shape holds " << n << " elements");
    FG_CHECK(s.offset >= end, "manifest: " << named << " starts at " << s.offset
                                           << ", inside the previous segment (which ends at " << end
                                           << ")");
    end = s.offset + s.numel;
    if (js.contains("aliases")) {
      FG_CHECK(js["aliases"].is_array(), "manifest: " << named << " \"aliases\" must be an array");
      for (const auto& a : js["aliases"]) {
        FG_CHECK(a.is_string(), "manifest: " << named << " aliases must be strings");
        s.aliases.push_back(a.get<std::string>());
      }
    }
    segments.push_back(std::move(s));
  }
  FG_CHECK(end <= numel, "manifest: segments end at " << end << " but \"numel\" is " << numel);
  return Layout(std::move(segments), flat_dtype, numel, align);
}

}  // namespace flatgather

#pragma once
/// \file safetensors.h
/// The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N
/// bytes of JSON (per tensor "dtype", "shape" and "data_offsets" [begin, end) into the data
/// section; an optional "__metadata__" object of strings), then the data section, whose
/// tensors are packed: no holes, no overlaps. This header holds the format only; moving the
/// bytes is a byte plan's job (NOTE: [byte plans]), and the LibTorch side that reads and
/// writes files is flatgather/torch_safetensors.h.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flatgather/dtype.h"

namespace flatgather {

/// One tensor of a safetensors file. `begin` and `end` are byte offsets into the data
/// section (after the header).
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<std::int64_t> shape;
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

/// A parsed and checked header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  ///< sorted by `begin`, tiling [0, data_bytes)
  std::map<std::string, std::string> metadata;
  std::int64_t data_offset = 0;  ///< where the data section starts in the file: 8 + N
  std::int64_t data_bytes = 0;   ///< length of the data section

  /// The entry named `name`, or nullptr.
  const SafetensorsEntry* find(const std::string& name) const;
};

/// "F32", "BF16", "I64", "BOOL", ...: the format's name of a dtype.
const char* safetensors_dtype_name(DType t);
/// Inverse of safetensors_dtype_name; empty for names this library has no dtype for
/// ("F8_E4M3", "U16", ...).
std::optional<DType> dtype_from_safetensors_name(std::string_view name);

/// Parses and checks a whole file of `size` bytes. Throws flatgather::Error naming the
/// problem for: a file shorter than its header, a header that is not a JSON object, an entry
/// without "dtype", "shape" or "data_offsets", an unknown dtype, negative or non-integer
/// sizes, offsets outside the data section, a byte length that does not match the shape and
/// dtype, overlapping entries, holes between entries or after the last one, and metadata
/// that is not an object of strings.
SafetensorsHeader parse_safetensors(const unsigned char* file, std::int64_t size);

/// The file's first bytes for `entries` (their begin/end already placed, tiling the data
/// section): the 8-byte length, then the JSON header padded with spaces so that the data
/// section starts at a multiple of 8 bytes. Entries are written in the given order.
std::string format_safetensors_header(const std::vector<SafetensorsEntry>& entries,
                                      const std::map<std::string, std::string>& metadata = {});

}  // namespace flatgather

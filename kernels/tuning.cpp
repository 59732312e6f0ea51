// Parsing of FLATGATHER_CUDA_TUNING (NOTE: [tuning overrides] in kernels/tuning.h). Plain C++,
// compiled in every build so that the CPU tests check it.

#include "tuning.h"

#include <cerrno>
#include <cstdlib>

#include "check.h"

namespace flatgather {
namespace detail {

namespace {

std::int64_t parse_integer(const std::string& key, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  FG_CHECK(!value.empty() && end && *end == '\0' && errno == 0,
           "FLATGATHER_CUDA_TUNING: '" << key << "=" << value << "' needs an integer value, e.g. "
                                       << key << "=512");
  return v;
}

/// An A/B switch (NOTE: [tuning overrides]): "old" or "new".
CopyPath parse_path(const std::string& key, const std::string& value) {
  FG_CHECK(value == "old" || value == "new", "FLATGATHER_CUDA_TUNING: '"
                                                 << key << "=" << value
                                                 << "' must be old or new, e.g. " << key << "=old");
  return value == "new" ? CopyPath::New : CopyPath::Old;
}

/// The A/B switches' keys and the Tuning fields they set.
struct PathKey {
  const char* key;
  CopyPath Tuning::*field;
};
constexpr PathKey kPathKeys[] = {
    {"strided", &Tuning::strided_path},           {"misaligned", &Tuning::misaligned_path},
    {"tile_scaling", &Tuning::tile_scaling_path}, {"unroll", &Tuning::unroll_path},
    {"transpose", &Tuning::transpose_path},       {"convert", &Tuning::convert_path},
    {"descriptors", &Tuning::descriptor_path}};

constexpr const char* kValidKeys =
    "block, blocks_per_sm, tile, copy_cost, streaming, min_tile, strided, misaligned, "
    "tile_scaling, unroll, transpose, convert, descriptors";

}  // namespace

void apply_tuning_overrides(Tuning& t, const std::string& spec) {
  std::size_t begin = 0;
  while (begin < spec.size()) {
    std::size_t end = spec.find(',', begin);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(begin, end - begin);
    begin = end + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    FG_CHECK(eq != std::string::npos, "FLATGATHER_CUDA_TUNING: '"
                                          << item
                                          << "' is not key=value; valid keys: " << kValidKeys);
    const std::string key = item.substr(0, eq);
    const std::string value = item.substr(eq + 1);
    const PathKey* path = nullptr;
    for (const PathKey& k : kPathKeys) {
      if (key == k.key) path = &k;
    }
    if (path) {
      t.*(path->field) = parse_path(key, value);
      continue;
    }
    const std::int64_t v = parse_integer(key, value);
    if (key == "block") {
      FG_CHECK(v >= 32 && v <= kMaxBlockThreads && v % 32 == 0,
               "FLATGATHER_CUDA_TUNING: block=" << v << " must be a multiple of 32 in [32, "
                                                << kMaxBlockThreads << "]");
      t.block_threads = static_cast<int>(v);
    } else if (key == "blocks_per_sm") {
      FG_CHECK(v >= 1 && v <= 64,
               "FLATGATHER_CUDA_TUNING: blocks_per_sm=" << v << " must be in [1, 64]");
      t.max_blocks_per_sm = static_cast<int>(v);
    } else if (key == "tile") {
      FG_CHECK(v >= 1, "FLATGATHER_CUDA_TUNING: tile=" << v << " must be at least 1 byte");
      t.tiles.tile_bytes = v;
    } else if (key == "copy_cost") {
      FG_CHECK(v >= 0, "FLATGATHER_CUDA_TUNING: copy_cost=" << v << " must not be negative");
      t.tiles.copy_cost_bytes = v;
    } else if (key == "streaming") {
      t.streaming_min_bytes = v;
    } else if (key == "min_tile") {
      FG_CHECK(v >= 1, "FLATGATHER_CUDA_TUNING: min_tile=" << v << " must be at least 1 byte");
      t.tiles.min_tile_bytes = v;
    } else {
      FG_CHECK(false,
               "FLATGATHER_CUDA_TUNING: unknown key '" << key << "'; valid keys: " << kValidKeys);
    }
  }
}

}  // namespace detail
}  // namespace flatgather

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

CopyPath parse_path(const std::string& key, const std::string& value) {
  FG_CHECK(value == "old" || value == "new", "FLATGATHER_CUDA_TUNING: '"
                                                 << key << "=" << value
                                                 << "' needs old or new, e.g. " << key << "=new");
  return value == "new" ? CopyPath::New : CopyPath::Old;
}

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
    FG_CHECK(eq != std::string::npos,
             "FLATGATHER_CUDA_TUNING: '"
                 << item
                 << "' is not key=value; valid keys: block, "
                    "blocks_per_sm, tile, copy_cost, streaming, strided, misaligned");
    const std::string key = item.substr(0, eq);
    if (key == "strided") {
      t.strided_path = parse_path(key, item.substr(eq + 1));
      continue;
    }
    if (key == "misaligned") {
      t.misaligned_path = parse_path(key, item.substr(eq + 1));
      continue;
    }
    const std::int64_t v = parse_integer(key, item.substr(eq + 1));
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
    } else {
      FG_CHECK(false, "FLATGATHER_CUDA_TUNING: unknown key '"
                          << key
                          << "'; valid keys: block, blocks_per_sm, tile, copy_cost, "
                             "streaming, strided, misaligned");
    }
  }
}

}  // namespace detail
}  // namespace flatgather

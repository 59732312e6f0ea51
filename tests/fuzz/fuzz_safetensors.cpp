// libFuzzer target for the safetensors header parser (scripts/fuzz-manifest.sh runs it).
// Properties, for any input bytes taken as a whole file:
//   - parse_safetensors either returns or throws flatgather::Error (anything else escapes and
//     libFuzzer reports it, as it does every crash, ASan or UBSan report);
//   - a parsed header's entries tile the data section exactly, each as long as its shape and
//     dtype say, checked here without the parser;
//   - the header written back for those entries and metadata, followed by the same data,
//     parses to the same entries and metadata.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "flatgather/error.h"
#include "flatgather/safetensors.h"

namespace {
[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n%s\n", what, detail.c_str());
  std::abort();
}

bool same_entries(const flatgather::SafetensorsHeader& a, const flatgather::SafetensorsHeader& b) {
  if (a.entries.size() != b.entries.size() || a.metadata != b.metadata) return false;
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const auto& x = a.entries[i];
    const auto& y = b.entries[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin ||
        x.end != y.end)
      return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  flatgather::SafetensorsHeader h;
  try {
    h = flatgather::parse_safetensors(data, static_cast<std::int64_t>(size));
  } catch (const flatgather::Error&) {
    return 0;  // a clear rejection is the expected outcome for most inputs
  }
  std::int64_t pos = 0;
  for (const auto& e : h.entries) {
    std::int64_t bytes = flatgather::dtype_size(e.dtype);
    for (std::int64_t s : e.shape) bytes *= s;
    if (e.end - e.begin != bytes) fail("an entry's length differs from its shape", e.name);
    if (bytes > 0 && e.begin != pos) fail("the entries do not tile the data section", e.name);
    if (bytes > 0) pos = e.end;
  }
  if (pos != h.data_bytes) fail("the entries do not reach the end of the data", "");
  if (h.data_offset + h.data_bytes != static_cast<std::int64_t>(size)) fail("sizes disagree", "");
  std::string file;
  try {
    file = flatgather::format_safetensors_header(h.entries, h.metadata);
    file.append(reinterpret_cast<const char*>(data) + h.data_offset,
                static_cast<std::size_t>(h.data_bytes));
    const auto again =
        flatgather::parse_safetensors(reinterpret_cast<const unsigned char*>(file.data()),
                                      static_cast<std::int64_t>(file.size()));
    if (!same_entries(again, h)) fail("the written header parses to other entries", file);
  } catch (const flatgather::Error& e) {
    fail(e.what(), file.substr(0, 4096));
  }
  return 0;
}

// libFuzzer target for the manifest parser (scripts/fuzz-manifest.sh runs it).
// Properties, for any input bytes:
//   - Layout::from_json either returns or throws flatgather::Error: any other exception
//     escapes and libFuzzer reports it, as it does every crash, leak, ASan or UBSan report;
//   - a parsed layout writes a manifest that parses back to an equal layout, which
//     check_matches accepts; compact and indented manifests agree;
//   - every segment can be found by its name and by each alias.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "flatgather/error.h"
#include "flatgather/layout.h"

namespace {
[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_manifest: %s\n%s\n", what, detail.c_str());
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  flatgather::Layout layout;
  try {
    layout = flatgather::Layout::from_json(text);
  } catch (const flatgather::Error&) {
    return 0;  // a clear rejection is the expected outcome for most inputs
  }
  (void)layout.nbytes();
  for (const flatgather::Segment& s : layout.segments()) {
    if (layout.find(s.name) == nullptr) fail("a segment cannot be found by its name", s.name);
    for (const std::string& alias : s.aliases) {
      if (layout.find(alias) == nullptr) fail("a segment cannot be found by an alias", alias);
    }
  }
  std::string written;
  try {
    written = layout.to_json();
    const flatgather::Layout again = flatgather::Layout::from_json(written);
    if (again != layout) fail("the written manifest parses to a different layout", written);
    again.check_matches(layout);
    layout.check_matches(again);
    const flatgather::Layout compact = flatgather::Layout::from_json(layout.to_json(-1));
    if (compact != layout) fail("the compact manifest parses to a different layout", written);
  } catch (const flatgather::Error& e) {
    fail(e.what(), written);
  }
  return 0;
}

#include "flatgather/layout.h"

#include "check.h"
#include "format.h"

namespace flatgather {

using detail::shape_string;

bool operator==(const Segment& a, const Segment& b) {
  return a.name == b.name && a.aliases == b.aliases && a.dtype == b.dtype && a.shape == b.shape &&
         a.offset == b.offset && a.numel == b.numel;
}

Layout::Layout(std::vector<Segment> segments, DType flat_dtype, std::int64_t numel,
               std::int64_t align_bytes)
    : segments_(std::move(segments)),
      flat_dtype_(flat_dtype),
      numel_(numel),
      align_bytes_(align_bytes) {}

const Segment* Layout::find(const std::string& name) const {
  for (const Segment& s : segments_) {
    if (s.name == name) return &s;
    for (const std::string& a : s.aliases) {
      if (a == name) return &s;
    }
  }
  return nullptr;
}

bool operator==(const Layout& a, const Layout& b) {
  return a.flat_dtype_ == b.flat_dtype_ && a.numel_ == b.numel_ &&
         a.align_bytes_ == b.align_bytes_ && a.segments_ == b.segments_;
}

void Layout::check_matches(const Layout& expected) const {
  const std::size_t common = std::min(segments_.size(), expected.segments_.size());
  for (std::size_t i = 0; i < common; ++i) {
    const Segment& got = segments_[i];
    const Segment& want = expected.segments_[i];
    const std::string where = "segment " + std::to_string(i) + " ";
    if (got.name != want.name) {
      const Segment* elsewhere = expected.find(got.name);
      FG_CHECK(false, where << "is '" << got.name << "' but the manifest has '" << want.name
                            << "' there"
                            << (elsewhere ? " (the manifest has '" + got.name +
                                                "' at another position: the order differs)"
                                          : std::string(" ('") + got.name +
                                                "' is not in the manifest)"));
    }
    FG_CHECK(got.shape == want.shape, where << "'" << got.name << "' has shape "
                                            << shape_string(got.shape)
                                            << " but the manifest says "
                                            << shape_string(want.shape));
    FG_CHECK(got.dtype == want.dtype, where << "'" << got.name << "' has dtype "
                                            << dtype_name(got.dtype) << " but the manifest says "
                                            << dtype_name(want.dtype));
    FG_CHECK(got.offset == want.offset, where << "'" << got.name << "' starts at flat offset "
                                              << got.offset << " but the manifest says "
                                              << want.offset);
    FG_CHECK(got.aliases == want.aliases,
             where << "'" << got.name << "' has different aliases than the manifest");
  }
  FG_CHECK(segments_.size() == expected.segments_.size(),
           "the layout has " << segments_.size() << " segments but the manifest has "
                             << expected.segments_.size() << "; first unmatched: '"
                             << (segments_.size() > common ? segments_[common].name
                                                           : expected.segments_[common].name)
                             << "'");
  FG_CHECK(flat_dtype_ == expected.flat_dtype_,
           "the flat dtype is " << dtype_name(flat_dtype_) << " but the manifest says "
                                << dtype_name(expected.flat_dtype_));
  FG_CHECK(align_bytes_ == expected.align_bytes_,
           "align_bytes is " << align_bytes_ << " but the manifest says " << expected.align_bytes_);
  FG_CHECK(numel_ == expected.numel_,
           "the flat length is " << numel_ << " but the manifest says " << expected.numel_);
}

}  // namespace flatgather

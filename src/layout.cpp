#include "flatgather/layout.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "check.h"
#include "format.h"
#include "layout_build.h"
#include "validate.h"

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
      FG_CHECK(false,
               where << "is '" << got.name << "' but the manifest has '" << want.name << "' there"
                     << (elsewhere ? " (the manifest has '" + got.name +
                                         "' at another position: the order differs)"
                                   : std::string(" ('") + got.name + "' is not in the manifest)"));
    }
    FG_CHECK(got.shape == want.shape, where << "'" << got.name << "' has shape "
                                            << shape_string(got.shape) << " but the manifest says "
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

namespace detail {

namespace {

// Drops size-1 dims and merges dims that are contiguous with each other.
void coalesce(const TensorRef& t, CopyDesc& d) {
  std::vector<std::int64_t> sizes, strides;
  for (std::size_t i = 0; i < t.sizes.size(); ++i) {
    if (t.sizes[i] == 1) continue;
    if (!sizes.empty() && strides.back() == t.strides[i] * t.sizes[i]) {
      sizes.back() *= t.sizes[i];
      strides.back() = t.strides[i];
    } else {
      sizes.push_back(t.sizes[i]);
      strides.push_back(t.strides[i]);
    }
  }
  if (sizes.empty() || d.numel == 0) {
    sizes = {d.numel};
    strides = {1};
  }
  FG_CHECK(static_cast<int>(sizes.size()) <= kMaxDims,
           "tensor " << flatgather::describe(t) << " has " << sizes.size()
                     << " dimensions that cannot be merged (strides too irregular); at most "
                     << kMaxDims << " are supported: pass t.contiguous() instead");
  d.ndim = static_cast<std::int32_t>(sizes.size());
  std::copy(sizes.begin(), sizes.end(), d.sizes);
  std::copy(strides.begin(), strides.end(), d.strides);
  d.contiguous = d.ndim == 1 && d.strides[0] == 1;
}

// NOTE: [byte plans]
// A flat dtype of uint8 makes a byte buffer: it takes tensors of every dtype, copied byte for
// byte (no cast), so a module's whole state (float weights, int64 counters, bool masks) fits
// in one plan. Each segment starts at a multiple of its element size (and of align_bytes),
// so views of the tensors' own dtypes can be taken at its offset. To the executors such a
// tensor is a uint8 tensor with one more, innermost dimension of its element size (stride 1):
// a same-dtype byte copy, which every executor already has (memcpy on the CPU, the
// vectorized path on CUDA), so no executor or kernel knows about byte plans. Offsets and
// the length of a byte plan count bytes; a segment's numel still counts its own elements.
TensorRef as_bytes(const TensorRef& t) {
  TensorRef b = t;
  const std::int64_t es = dtype_size(t.dtype);
  b.dtype = DType::UInt8;
  for (std::int64_t& stride : b.strides) stride *= es;
  b.sizes.push_back(es);
  b.strides.push_back(1);
  return b;
}

}  // namespace

LayoutBuild build_layout(const std::vector<TensorRef>& tensors, DType flat_dtype,
                         std::int64_t align_bytes) {
  LayoutBuild out;
  const std::int64_t flat_size = dtype_size(flat_dtype);
  const std::int64_t align_elems = align_bytes > flat_size ? align_bytes / flat_size : 1;
  const bool byte_plan = flat_dtype == DType::UInt8;  // NOTE: [byte plans]

  std::vector<Segment> segments;
  std::vector<CopyDesc>& segment_copies = out.segment_copies;
  std::map<std::tuple<void*, DType, std::vector<std::int64_t>, std::vector<std::int64_t>>,
           std::size_t>
      tie_index;
  std::int64_t cursor = 0;
  std::vector<std::size_t>& segment_of = out.segment_of;
  segment_of.resize(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorRef& t = tensors[i];
    const std::int64_t n = numel(t);
    if (t.data && n > 0) {
      auto key = std::make_tuple(t.data, t.dtype, t.sizes, t.strides);
      auto [it, inserted] = tie_index.emplace(std::move(key), segments.size());
      if (!inserted) {
        segments[it->second].aliases.push_back(t.name);
        segment_of[i] = it->second;
        continue;
      }
    }
    // In a byte plan the segment also starts at a multiple of its element size (both are
    // powers of two, so the larger is a multiple of the smaller).
    const std::int64_t elem = byte_plan ? dtype_size(t.dtype) : 1;
    const std::int64_t start_align = std::max(align_elems, elem);
    cursor = (cursor + start_align - 1) / start_align * start_align;
    const std::int64_t flat_n = n * elem;
    FG_CHECK(cursor <= kMaxBytes / flat_size - flat_n,
             "the flat buffer would exceed 2^62 bytes at tensor " << flatgather::describe(t));
    Segment s;
    s.name = t.name;
    s.dtype = t.dtype;
    s.shape = t.sizes;
    s.offset = cursor;
    s.numel = n;
    CopyDesc d;
    d.data = t.data;
    d.flat_offset = cursor;
    d.numel = flat_n;
    d.dtype = byte_plan ? DType::UInt8 : t.dtype;
    d.segment = static_cast<std::int32_t>(segments.size());
    coalesce(byte_plan ? as_bytes(t) : t, d);
    segment_of[i] = segments.size();
    out.first_tensor.push_back(i);
    segments.push_back(std::move(s));
    segment_copies.push_back(d);
    cursor += flat_n;
  }
  const std::int64_t total = (cursor + align_elems - 1) / align_elems * align_elems;

  // Copies in flat order, with zero-filled padding so that they tile [0, total) exactly.
  std::int64_t end = 0;
  auto pad_to = [&](std::int64_t offset) {
    if (offset > end) {
      CopyDesc pad;
      pad.flat_offset = end;
      pad.numel = offset - end;
      pad.dtype = flat_dtype;
      pad.sizes[0] = pad.numel;
      pad.strides[0] = 1;
      out.copies.push_back(pad);
    }
  };
  for (const CopyDesc& d : segment_copies) {
    if (d.numel == 0) continue;
    pad_to(d.flat_offset);
    out.copies.push_back(d);
    end = d.flat_offset + d.numel;
  }
  pad_to(total);

  out.layout = Layout(std::move(segments), flat_dtype, total, align_bytes);
  return out;
}

}  // namespace detail

}  // namespace flatgather

#pragma once
/// \file layout.h
/// The immutable description of a flat buffer: which tensor lives at which offset.

#include <cstdint>
#include <string>
#include <vector>

#include "flatgather/dtype.h"

namespace flatgather {

/// One tensor's place in the flat buffer. Tied tensors (same memory, shape, strides and
/// dtype under several names) share one segment; the later names are its `aliases`.
struct Segment {
  std::string name;
  std::vector<std::string> aliases;
  DType dtype = DType::Float32;  ///< the tensor's own dtype
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;  ///< first element in the flat buffer
  std::int64_t numel = 0;

  friend bool operator==(const Segment& a, const Segment& b);
};

/// Ordered segments, the flat dtype and the total length (padding included).
///
///   Layout l = plan.layout();
///   for (const Segment& s : l.segments()) std::cout << s.name << " @" << s.offset << "\n";
class Layout {
 public:
  Layout() = default;
  Layout(std::vector<Segment> segments, DType flat_dtype, std::int64_t numel,
         std::int64_t align_bytes);

  const std::vector<Segment>& segments() const { return segments_; }
  DType flat_dtype() const { return flat_dtype_; }
  /// Elements of the flat buffer, padding included.
  std::int64_t numel() const { return numel_; }
  std::int64_t nbytes() const { return numel_ * dtype_size(flat_dtype_); }
  std::int64_t align_bytes() const { return align_bytes_; }

  /// The segment with this name or alias, or nullptr.
  const Segment* find(const std::string& name) const;

  /// The manifest: JSON with "format", "flat_dtype", "numel", "align_bytes" and per segment
  /// "name", "aliases", "dtype", "shape", "offset", "numel". Stable across runs.
  std::string to_json(int indent = 2) const;
  /// Parses a manifest written by to_json. Throws flatgather::Error naming what is wrong.
  static Layout from_json(const std::string& json);

  /// Throws flatgather::Error naming the first difference (order, name, shape, dtype, offset,
  /// flat dtype, length) between this layout and `expected`; returns when they are equal.
  void check_matches(const Layout& expected) const;

  friend bool operator==(const Layout& a, const Layout& b);
  friend bool operator!=(const Layout& a, const Layout& b) { return !(a == b); }

 private:
  std::vector<Segment> segments_;
  DType flat_dtype_ = DType::Float32;
  std::int64_t numel_ = 0;
  std::int64_t align_bytes_ = 0;
};

}  // namespace flatgather

#pragma once
// Internal: turning validated tensors into a layout and the copies that tile its flat buffer.
// The plan (src/plan.cpp) builds on it; overlap analysis, checks per call and rebinding stay
// in the plan.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "copy_desc.h"
#include "flatgather/layout.h"
#include "flatgather/tensor_ref.h"

namespace flatgather {
namespace detail {

/// A layout and its copies, built from tensors that detail::validate accepted.
struct LayoutBuild {
  Layout layout;
  /// One per segment, in segment order, strides coalesced.
  std::vector<CopyDesc> segment_copies;
  /// Ordered by flat offset, with zero-filled padding, so that they tile [0, numel) exactly.
  std::vector<CopyDesc> copies;
  /// Per tensor: its segment. Tensors with the same data, dtype, sizes and strides share one
  /// (the later ones are its aliases).
  std::vector<std::size_t> segment_of;
  /// Per segment: the tensor it was made from.
  std::vector<std::size_t> first_tensor;
};

/// Offsets (each segment starts at a multiple of `align_bytes`, padding zero-filled), ties as
/// aliases, and the copies; throws when the flat buffer would pass 2^62 bytes or a tensor's
/// strides cannot be merged into kMaxDims dimensions.
LayoutBuild build_layout(const std::vector<TensorRef>& tensors, DType flat_dtype,
                         std::int64_t align_bytes);

}  // namespace detail
}  // namespace flatgather

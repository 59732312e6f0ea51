#pragma once
// Benchmark suites: lists of tensor shapes built from architecture formulas, and the
// user-supplied manifest suite. No LibTorch here: a suite is only a description.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flatgather/dtype.h"

namespace fgbench {

/// How a tensor's memory is laid out relative to its logical shape.
enum class Storage {
  Contiguous,    ///< row-major
  ChannelsLast,  ///< 4-D conv weight [O, I, kh, kw] stored as [O, kh, kw, I]
  Transposed,    ///< 2-D view `w.t()` of a contiguous [cols, rows] matrix
};

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  flatgather::DType dtype = flatgather::DType::Float32;
  Storage storage = Storage::Contiguous;

  std::int64_t numel() const;
  std::int64_t nbytes() const { return numel() * flatgather::dtype_size(dtype); }
};

struct Suite {
  std::string name;
  std::string description;  ///< one line: the formula it was built from
  std::vector<TensorSpec> tensors;
  flatgather::DType flat_dtype = flatgather::DType::Float32;
  bool gpu_only = false;

  std::int64_t numel() const;
  /// Bytes of the tensors themselves (what the model occupies).
  std::int64_t tensor_bytes() const;
  /// A byte buffer (flat dtype uint8): every dtype copied byte for byte (NOTE: [byte plans]
  /// in src/layout.cpp).
  bool byte_plan() const { return flat_dtype == flatgather::DType::UInt8; }
  /// Offset of each tensor in the flat buffer, in elements of the flat dtype: packed, except
  /// that in a byte plan each starts at a multiple of its element size (the plan's rule with
  /// align_bytes 0).
  std::vector<std::int64_t> flat_offsets() const;
  /// Elements of the flat buffer (padding included).
  std::int64_t flat_numel() const;
  /// Bytes of the flat buffer.
  std::int64_t flat_bytes() const { return flat_numel() * flatgather::dtype_size(flat_dtype); }
  /// True when every tensor is contiguous and of the flat dtype (byte-copy peers apply).
  bool plain() const;
  /// True when every tensor is of a floating dtype (scatter_add applies).
  bool floating() const;
};

/// The embedded suites, in the order they run.
std::vector<Suite> builtin_suites();

/// Reads a manifest: a JSON array of {"name": str, "shape": [int...], "dtype": str}. The
/// suite is named after the file's stem. Throws std::runtime_error with the file name and the
/// line of the offending element for anything invalid.
Suite load_manifest(const std::string& path);

/// "12.3 MB" style.
std::string format_bytes(std::int64_t bytes);

}  // namespace fgbench

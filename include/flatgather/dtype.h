#pragma once
/// \file dtype.h
/// Element types.
///
/// Casts between floating types round to nearest, ties to even, as LibTorch's `Tensor.to()`;
/// the details (NaN bits, float64 through float32) are NOTE: [rounding] in src/cast.h.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "flatgather/config.h"

namespace flatgather {

/// The element types a plan can hold. Floating types can be cast into one another; the
/// others are copied byte for byte into a flat buffer of the same type.
enum class DType : std::uint8_t {
  Float32,
  Float16,
  BFloat16,
  Float64,
  Int8,
  UInt8,
  Int16,
  Int32,
  Int64,
  Bool,
};

/// Bytes per element.
FG_HOST_DEVICE constexpr int dtype_size(DType t) {
  switch (t) {
    case DType::Float64:
    case DType::Int64: return 8;
    case DType::Float32:
    case DType::Int32: return 4;
    case DType::Float16:
    case DType::BFloat16:
    case DType::Int16: return 2;
    default: return 1;
  }
}

/// True for float32, float16, bfloat16 and float64.
FG_HOST_DEVICE constexpr bool dtype_is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16 || t == DType::Float64;
}

/// True when a tensor of `from` can be gathered into (and scattered back from) a flat buffer
/// of `to`: the same type, or two floating types.
FG_HOST_DEVICE constexpr bool cast_supported(DType from, DType to) {
  return from == to || (dtype_is_floating(from) && dtype_is_floating(to));
}

/// "float32", "bfloat16", ... (the names LibTorch prints without the "torch." prefix).
const char* dtype_name(DType t);

/// Inverse of dtype_name; also accepts "float", "half", "double", "long", "int", "bf16",
/// "fp16", "fp32", "fp64". Empty when the name is unknown.
std::optional<DType> dtype_from_name(std::string_view name);

/// Every name dtype_from_name accepts as canonical, for error messages.
std::string dtype_valid_names();

}  // namespace flatgather

#pragma once
/// \file cast.h
/// The float conversions used by every executor (host and device), and the storage types
/// kernels are written over. Private: users choose a flat dtype, and dtype.h says how it
/// rounds.
///
/// NOTE: [rounding]
/// Narrowing float conversions round to nearest, ties to even, exactly as LibTorch's scalar
/// `c10::Half(float)` / `c10::BFloat16(float)`: overflow gives infinity and infinities keep
/// their sign. float64 -> float16 and float64 -> bfloat16 go through float32, which is what
/// `Tensor.to()` does. Widening conversions are exact. A NaN becomes what LibTorch's CPU
/// `Tensor.to()` writes, measured on 1.13: float16 0x7E00 with the sign kept (0xFE00);
/// bfloat16 0xFFFF from float32 (its vectorized path, at every length) and 0x7FC0 from
/// float16 (its scalar path). From float64 LibTorch itself depends on the length (0xFFFF in
/// its vectorized body, 0x7FC0 in the scalar tail); we write 0xFFFF. LibTorch's CUDA `.to()`
/// writes 0x7FFF for a bfloat16 NaN; we keep the CPU bits on every executor, so CPU and GPU
/// results of flatgather are identical, and tests compare NaN as NaN against CUDA references.
/// The same functions run on the host and in CUDA kernels; the kernels' hardware conversions
/// (NOTE: [hardware conversions] in kernels/copy.cuh) write the same bits, their NaNs through
/// float_bits_are_nan, half_nan_bits and kBFloat16NanFromFloat below.

#include <cstdint>
#include <cstring>

#include "flatgather/config.h"
#include "flatgather/dtype.h"

namespace flatgather {

namespace detail {

template <class To, class From>
FG_HOST_DEVICE FG_FORCE_INLINE To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

}  // namespace detail

/// float16 bits -> float32, exact.
FG_HOST_DEVICE FG_FORCE_INLINE float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) {  // infinity or NaN: keep the payload
    return detail::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  }
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float32
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return detail::bit_cast<float>(sign | detail::bit_cast<std::uint32_t>(magnitude));
  }
  return detail::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// Whether the float32 bits `x` are a NaN.
FG_HOST_DEVICE FG_FORCE_INLINE bool float_bits_are_nan(std::uint32_t x) {
  return (x & 0x7FFFFFFFu) > 0x7F800000u;
}

/// What the float32 NaN with bits `x` becomes in float16 (NOTE: [rounding]): 0x7E00 with its
/// sign, whatever its payload.
FG_HOST_DEVICE FG_FORCE_INLINE std::uint16_t half_nan_bits(std::uint32_t x) {
  return static_cast<std::uint16_t>(((x >> 16) & 0x8000u) | 0x7E00u);
}

/// What a float32 (or float64) NaN becomes in bfloat16 (NOTE: [rounding]), whatever its sign
/// and payload.
constexpr std::uint16_t kBFloat16NanFromFloat = 0xFFFFu;

/// float32 -> float16 bits, round to nearest even (see NOTE: [rounding]).
FG_HOST_DEVICE FG_FORCE_INLINE std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = detail::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7FFFFFFFu;
  if (float_bits_are_nan(x)) return half_nan_bits(x);
  if (ax >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 2^16: inf
  if (ax >= 0x38800000u) {  // normal float16 range (>= 2^-14); a carry may round up to inf
    const std::uint32_t rebiased = ax - 0x38000000u;  // exponent bias 127 -> 15
    std::uint32_t q = rebiased >> 13;
    const std::uint32_t rem = rebiased & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;
    return static_cast<std::uint16_t>(sign | q);
  }
  const std::uint32_t exp = ax >> 23;
  if (exp < 102u) return static_cast<std::uint16_t>(sign);  // below 2^-25 (or a tie at it)
  // Subnormal float16: count units of 2^-24. The significand has 24 bits.
  const std::uint32_t mant = (ax & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126u - exp;  // 14 .. 24
  std::uint32_t q = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
  return static_cast<std::uint16_t>(sign | q);
}

/// bfloat16 bits -> float32, exact.
FG_HOST_DEVICE FG_FORCE_INLINE float bfloat16_bits_to_float(std::uint16_t b) {
  return detail::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// float32 -> bfloat16 bits, round to nearest even (see NOTE: [rounding]). `nan_bits` is
/// what a NaN becomes.
FG_HOST_DEVICE FG_FORCE_INLINE std::uint16_t float_to_bfloat16_bits(
    float f, std::uint16_t nan_bits = kBFloat16NanFromFloat) {
  const std::uint32_t x = detail::bit_cast<std::uint32_t>(f);
  const std::uint32_t bias = 0x7FFFu + ((x >> 16) & 1u);
  const auto rounded = static_cast<std::uint16_t>((x + bias) >> 16);
  // A select rather than an early return, so that loops over it vectorize.
  return float_bits_are_nan(x) ? nan_bits : rounded;
}

/// Storage types of the floating dtypes, so kernels can be written once per type pair.
struct Half {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};

/// The compute type of a storage type: float for float16/bfloat16/float32, double for float64.
template <class T>
struct Compute {
  using type = T;
};
template <>
struct Compute<Half> {
  using type = float;
};
template <>
struct Compute<BFloat16> {
  using type = float;
};

FG_HOST_DEVICE FG_FORCE_INLINE float to_float(Half h) {
  return half_bits_to_float(h.bits);
}
FG_HOST_DEVICE FG_FORCE_INLINE float to_float(BFloat16 b) {
  return bfloat16_bits_to_float(b.bits);
}
FG_HOST_DEVICE FG_FORCE_INLINE float to_float(float f) {
  return f;
}
FG_HOST_DEVICE FG_FORCE_INLINE double to_float(double d) {
  return d;
}

/// Converts between storage types with the rounding of NOTE: [rounding].
template <class To>
struct Convert;

template <>
struct Convert<float> {
  FG_HOST_DEVICE static FG_FORCE_INLINE float from(float v) { return v; }
  FG_HOST_DEVICE static FG_FORCE_INLINE float from(double v) { return static_cast<float>(v); }
  FG_HOST_DEVICE static FG_FORCE_INLINE float from(Half v) { return to_float(v); }
  FG_HOST_DEVICE static FG_FORCE_INLINE float from(BFloat16 v) { return to_float(v); }
};
template <>
struct Convert<double> {
  template <class From>
  FG_HOST_DEVICE static FG_FORCE_INLINE double from(From v) {
    return static_cast<double>(to_float(v));
  }
};
template <>
struct Convert<Half> {
  template <class From>
  FG_HOST_DEVICE static FG_FORCE_INLINE Half from(From v) {
    return Half{float_to_half_bits(Convert<float>::from(v))};
  }
  FG_HOST_DEVICE static FG_FORCE_INLINE Half from(Half v) { return v; }
};
template <>
struct Convert<BFloat16> {
  FG_HOST_DEVICE static FG_FORCE_INLINE BFloat16 from(float v) {
    return BFloat16{float_to_bfloat16_bits(v, kBFloat16NanFromFloat)};
  }
  FG_HOST_DEVICE static FG_FORCE_INLINE BFloat16 from(double v) {
    return BFloat16{float_to_bfloat16_bits(static_cast<float>(v), kBFloat16NanFromFloat)};
  }
  FG_HOST_DEVICE static FG_FORCE_INLINE BFloat16 from(Half v) {
    return BFloat16{float_to_bfloat16_bits(to_float(v), 0x7FC0u)};
  }
  FG_HOST_DEVICE static FG_FORCE_INLINE BFloat16 from(BFloat16 v) { return v; }
};

/// `convert<To>(v)`: the one conversion every executor uses.
template <class To, class From>
FG_HOST_DEVICE FG_FORCE_INLINE To convert(From v) {
  return Convert<To>::from(v);
}

/// Storage type of a floating dtype: `FloatOf<DType::BFloat16>::type` is BFloat16.
template <DType D>
struct FloatOf;
template <>
struct FloatOf<DType::Float32> {
  using type = float;
};
template <>
struct FloatOf<DType::Float64> {
  using type = double;
};
template <>
struct FloatOf<DType::Float16> {
  using type = Half;
};
template <>
struct FloatOf<DType::BFloat16> {
  using type = BFloat16;
};

/// Calls `f(T{})` with the storage type of the floating dtype `t`.
template <class F>
FG_HOST_DEVICE FG_FORCE_INLINE decltype(auto) dispatch_floating(DType t, F&& f) {
  switch (t) {
    case DType::Float64: return f(double{});
    case DType::Float16: return f(Half{});
    case DType::BFloat16: return f(BFloat16{});
    default: return f(float{});
  }
}

}  // namespace flatgather

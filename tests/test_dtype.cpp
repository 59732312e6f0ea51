// Casts: the library's conversions against LibTorch's Tensor.to(), bit for bit.
#include <limits>
#include <random>

#include "flatgather/dtype.h"
#include "flatgather/torch.h"
#include "cast.h"  // src/: the casts under test are private
#include "torch_util.h"

namespace {

using flatgather::DType;

// Float32 inputs that stress rounding: random bit patterns (every exponent), values near the
// float16 / bfloat16 overflow and subnormal thresholds, exact ties, and the specials.
at::Tensor tricky_floats(int64_t n) {
  std::mt19937 rng(1234);
  std::vector<float> v;
  std::uniform_int_distribution<uint32_t> bits;
  for (int64_t i = 0; i < n; ++i) {
    float f;
    const uint32_t b = bits(rng);
    std::memcpy(&f, &b, 4);
    if (!std::isnan(f)) v.push_back(f);
  }
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f,
                            -1.0f,
                            65504.0f,
                            65519.99f,
                            65520.0f,
                            65536.0f,
                            -65520.0f,
                            6.1035156e-05f,
                            6.0975552e-05f,
                            5.9604645e-08f,
                            2.9802322e-08f,
                            2.9802326e-08f,
                            1e-30f,
                            3.4028235e38f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min()};
  v.insert(v.end(), std::begin(specials), std::end(specials));
  // Exact float16 ties: halfway between neighbouring float16 values, both parities.
  for (uint16_t h = 0x0001; h < 0x7BFF; h = static_cast<uint16_t>(h + 97)) {
    const float lo = flatgather::half_bits_to_float(h);
    const float hi = flatgather::half_bits_to_float(static_cast<uint16_t>(h + 1));
    v.push_back(lo + (hi - lo) / 2);
    v.push_back(-(lo + (hi - lo) / 2));
  }
  // Exact bfloat16 ties.
  for (uint32_t b = 0x00010000u; b < 0x7F000000u; b += 0x00731000u) {
    float f;
    const uint32_t tie = (b & 0xFFFF0000u) | 0x8000u;
    std::memcpy(&f, &tie, 4);
    v.push_back(f);
  }
  return torch::tensor(v, at::kFloat);
}

// Converts `src` element by element with flatgather::convert and compares raw bits with .to().
void fgtest_expect_nan_bits(const at::Tensor& src, at::ScalarType to) {
  const at::Tensor ref = src.to(to);
  at::Tensor ours = at::empty_like(ref);
  auto* out = static_cast<uint16_t*>(ours.data_ptr());
  for (int64_t i = 0; i < src.numel(); ++i) {
    flatgather::dispatch_floating(flatgather::torch::to_dtype(src.scalar_type()), [&](auto s) {
      using S = decltype(s);
      const S v = static_cast<const S*>(src.data_ptr())[i];
      out[i] = to == at::kHalf ? flatgather::convert<flatgather::Half>(v).bits
                               : flatgather::convert<flatgather::BFloat16>(v).bits;
    });
  }
  EXPECT_TRUE(at::equal(ours.view(at::kShort), ref.view(at::kShort)))
      << src.scalar_type() << " -> " << to << ": " << ours.view(at::kShort) << " vs "
      << ref.view(at::kShort);
}

template <class Fn>
at::Tensor map_floats(const at::Tensor& in, at::ScalarType out_type, Fn fn) {
  at::Tensor out = at::empty_like(in, out_type);
  const float* src = in.data_ptr<float>();
  auto* dst = static_cast<uint16_t*>(out.data_ptr());
  for (int64_t i = 0; i < in.numel(); ++i) dst[i] = fn(src[i]);
  return out;
}

TEST(DType, FloatToHalfMatchesTorch) {
  const at::Tensor in = tricky_floats(200000);
  const at::Tensor ours = map_floats(in, at::kHalf, flatgather::float_to_half_bits);
  EXPECT_TRUE(fgtest::bits_equal(ours, in.to(at::kHalf)));
}

TEST(DType, FloatToBFloat16MatchesTorch) {
  const at::Tensor in = tricky_floats(200000);
  const at::Tensor ours =
      map_floats(in, at::kBFloat16, [](float f) { return flatgather::float_to_bfloat16_bits(f); });
  EXPECT_TRUE(fgtest::bits_equal(ours, in.to(at::kBFloat16)));
}

TEST(DType, EveryHalfAndBFloat16WidensExactly) {
  at::Tensor all = at::arange(0, 65536, at::kInt).to(at::kShort);  // every bit pattern
  for (auto narrow : {at::kHalf, at::kBFloat16}) {
    const at::Tensor t = all.view(narrow);
    const at::Tensor ref = t.to(at::kFloat);
    at::Tensor ours = at::empty({65536}, at::kFloat);
    const auto* bits = static_cast<const uint16_t*>(t.data_ptr());
    for (int i = 0; i < 65536; ++i) {
      ours.data_ptr<float>()[i] = narrow == at::kHalf ? flatgather::half_bits_to_float(bits[i])
                                                      : flatgather::bfloat16_bits_to_float(bits[i]);
    }
    EXPECT_TRUE(fgtest::bits_equal(ours, ref)) << narrow;
    // Narrow -> float -> narrow is the identity on every non-NaN pattern.
    const at::Tensor back = narrow == at::kHalf
                                ? map_floats(ours, at::kHalf, flatgather::float_to_half_bits)
                                : map_floats(ours, at::kBFloat16, [](float f) {
                                    return flatgather::float_to_bfloat16_bits(f);
                                  });
    EXPECT_TRUE(fgtest::bits_equal(back, t)) << narrow;
  }
}

TEST(DType, NaNStaysNaNAndInfinitiesKeepTheirSign) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(flatgather::float_to_half_bits(inf), 0x7C00);
  EXPECT_EQ(flatgather::float_to_half_bits(-inf), 0xFC00);
  EXPECT_EQ(flatgather::float_to_bfloat16_bits(inf), 0x7F80);
  EXPECT_EQ(flatgather::float_to_bfloat16_bits(-inf), 0xFF80);
  EXPECT_EQ(flatgather::float_to_half_bits(std::nanf("")), 0x7E00);
  EXPECT_EQ(flatgather::convert<flatgather::BFloat16>(std::nanf("")).bits, 0xFFFF);
  EXPECT_EQ(flatgather::convert<flatgather::BFloat16>(flatgather::Half{0x7E00}).bits, 0x7FC0);
  EXPECT_TRUE(std::isnan(flatgather::half_bits_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(flatgather::bfloat16_bits_to_float(0x7FC0)));
}

// NaN bits exactly as Tensor.to() writes them (see NOTE: [rounding]), from every source type.
TEST(DType, NaNBitsMatchTorch) {
  const std::vector<uint32_t> nan_bits = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FA00000u,
                                          0xFFFFFFFFu};
  at::Tensor f = at::empty({5}, at::kFloat);
  std::memcpy(f.data_ptr(), nan_bits.data(), 20);
  // float64 -> bfloat16 is left out: LibTorch's own NaN bits depend on the length there.
  EXPECT_EQ(flatgather::convert<flatgather::BFloat16>(std::nan("")).bits, 0xFFFF);
  for (auto from : {at::kFloat, at::kDouble, at::kHalf}) {
    const at::Tensor src = f.to(from);
    for (auto to : {at::kHalf, at::kBFloat16}) {
      if (from == to || (from == at::kDouble && to == at::kBFloat16)) continue;
      fgtest_expect_nan_bits(src, to);
    }
  }
}

TEST(DType, DoubleNarrowingMatchesTorch) {
  const at::Tensor in = at::randn({100000}, at::kDouble).mul_(1000);
  for (auto narrow : {at::kHalf, at::kBFloat16, at::kFloat}) {
    const at::Tensor ref = in.to(narrow);
    at::Tensor ours = at::empty({in.numel()}, narrow);
    const double* src = in.data_ptr<double>();
    for (int64_t i = 0; i < in.numel(); ++i) {
      if (narrow == at::kHalf) {
        static_cast<flatgather::Half*>(ours.data_ptr())[i] =
            flatgather::convert<flatgather::Half>(src[i]);
      } else if (narrow == at::kBFloat16) {
        static_cast<flatgather::BFloat16*>(ours.data_ptr())[i] =
            flatgather::convert<flatgather::BFloat16>(src[i]);
      } else {
        ours.data_ptr<float>()[i] = flatgather::convert<float>(src[i]);
      }
    }
    EXPECT_TRUE(fgtest::bits_equal(ours, ref)) << narrow;
  }
}

TEST(DType, NamesRoundTrip) {
  for (auto t : {DType::Float32, DType::Float16, DType::BFloat16, DType::Float64, DType::Int8,
                 DType::UInt8, DType::Int16, DType::Int32, DType::Int64, DType::Bool}) {
    EXPECT_EQ(flatgather::dtype_from_name(flatgather::dtype_name(t)), t);
    EXPECT_EQ(flatgather::torch::to_dtype(flatgather::torch::to_scalar_type(t)), t);
    EXPECT_EQ(at::elementSize(flatgather::torch::to_scalar_type(t)),
              static_cast<size_t>(flatgather::dtype_size(t)));
  }
  EXPECT_EQ(flatgather::dtype_from_name("torch.bfloat16"), DType::BFloat16);
  EXPECT_EQ(flatgather::dtype_from_name("half"), DType::Float16);
  EXPECT_FALSE(flatgather::dtype_from_name("float8").has_value());
  EXPECT_TRUE(flatgather::cast_supported(DType::BFloat16, DType::Float64));
  EXPECT_FALSE(flatgather::cast_supported(DType::Int32, DType::Float32));
  EXPECT_THROW_MSG(flatgather::torch::to_dtype(at::kComplexFloat), "not supported", "float32");
}

}  // namespace

#pragma once
// LibTorch helpers for tests: random tensors of every dtype, references, bitwise compares.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <random>
#include <vector>

#include "test_util.h"

namespace fgtest {

/// Random values of `dtype` (never all zeros): normal floats, integers in a small range,
/// random bools.
inline at::Tensor random_tensor(at::IntArrayRef sizes, at::ScalarType dtype) {
  if (at::isFloatingType(dtype)) return at::randn(sizes, at::kDouble).mul_(3).to(dtype);
  if (dtype == at::kBool) return at::randint(0, 2, sizes, at::kLong).to(at::kBool);
  if (dtype == at::kByte) return at::randint(1, 255, sizes, at::kLong).to(dtype);
  return at::randint(-100, 100, sizes, at::kLong).to(dtype);
}

/// `n` random values of `dtype`; floating ones scaled by a random power of two, with NaN,
/// infinities, signed zeros, subnormals and values that overflow or round at the edges of the
/// narrow types sprinkled in (in one call of three, or in every call when `always`).
inline at::Tensor random_with_specials(std::mt19937_64& rng, std::int64_t n, at::ScalarType dtype,
                                       bool always = false) {
  if (!at::isFloatingType(dtype)) return random_tensor({n}, dtype);
  at::Tensor d =
      at::randn({n}, at::kDouble).mul_(std::ldexp(1.0, static_cast<int>(rng() % 12) - 4));
  static const double kSpecial[] = {std::nan(""),
                                    INFINITY,
                                    -INFINITY,
                                    -0.0,
                                    65504.0,
                                    65520.0,
                                    -65536.0,
                                    1e-8,
                                    5.9604644775390625e-8,
                                    1e-40,
                                    3.4e38,
                                    1e39,
                                    1.0000001,
                                    3.0 * std::ldexp(1.0, -150),
                                    0.1};
  if (n > 0 && (always || rng() % 3 == 0)) {
    auto* p = d.data_ptr<double>();
    const int count = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < count; ++k) p[rng() % n] = kSpecial[rng() % std::size(kSpecial)];
  }
  return d.to(dtype);
}

/// The reference gather: torch::cat of every reshape(-1), cast to `dtype`.
inline at::Tensor reference_gather(const std::vector<at::Tensor>& tensors, at::ScalarType dtype) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.reshape(-1).to(dtype));
  return at::cat(flat);
}

/// scatter_add's definition, `t + alpha * v` rounded once: both operands cast with `.to()` to
/// the compute type (float64 when either is float64, else float32, alpha rounded to it), one
/// std::fma per element, the result cast back to t's dtype with `.to()`. Shapes must match.
inline at::Tensor reference_add_scaled(const at::Tensor& t, const at::Tensor& v, double alpha) {
  const bool wide = t.scalar_type() == at::kDouble || v.scalar_type() == at::kDouble;
  const at::ScalarType compute = wide ? at::kDouble : at::kFloat;
  at::Tensor tc = t.cpu().reshape(-1).to(compute).contiguous().clone();
  const at::Tensor vc = v.cpu().reshape(-1).to(compute).contiguous();
  const int64_t n = tc.numel();
  if (wide) {
    double* pt = tc.data_ptr<double>();
    const double* pv = vc.data_ptr<double>();
    for (int64_t i = 0; i < n; ++i) pt[i] = std::fma(alpha, pv[i], pt[i]);
  } else {
    float* pt = tc.data_ptr<float>();
    const float* pv = vc.data_ptr<float>();
    const auto a = static_cast<float>(alpha);
    for (int64_t i = 0; i < n; ++i) pt[i] = std::fma(a, pv[i], pt[i]);
  }
  return tc.to(t.scalar_type()).reshape(t.sizes());
}

/// Equal bits (NaNs of any payload count as equal to each other).
inline ::testing::AssertionResult bits_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) return ::testing::AssertionFailure() << "dtypes differ";
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << "shapes differ";
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  const auto n = static_cast<std::size_t>(ac.numel());
  const std::size_t es = ac.element_size();
  const auto* pa = static_cast<const unsigned char*>(ac.data_ptr());
  const auto* pb = static_cast<const unsigned char*>(bc.data_ptr());
  at::Tensor nan_a, nan_b;
  if (at::isFloatingType(a.scalar_type())) {
    nan_a = ac.isnan().contiguous();
    nan_b = bc.isnan().contiguous();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (nan_a.defined() && nan_a.data_ptr<bool>()[i] && nan_b.data_ptr<bool>()[i]) continue;
    if (std::memcmp(pa + i * es, pb + i * es, es) != 0) {
      return ::testing::AssertionFailure()
             << "element " << i << " differs: " << ac.reshape(-1)[static_cast<int64_t>(i)].item()
             << " vs " << bc.reshape(-1)[static_cast<int64_t>(i)].item();
    }
  }
  return ::testing::AssertionSuccess();
}

/// `t` (any layout, any device) filled in place with a sentinel that no test input holds, so
/// an element the code under test forgets shows up; returns `t`. Fresh `at::empty` memory is
/// often zero pages, which would hide a forgotten zero.
inline at::Tensor poison_(at::Tensor t) {
  if (at::isFloatingType(t.scalar_type())) {
    t.fill_(-1234.5);
  } else if (t.scalar_type() == at::kBool) {
    // Not a valid bool: any unwritten element differs in bits.
    t.view(at::kByte).fill_(0x5A);
  } else {
    // Outside random_tensor's ranges (bytes 1..254, other integers -100..99), and not zero.
    const at::ScalarType d = t.scalar_type();
    t.fill_(d == at::kByte ? 255 : d == at::kChar ? -128 : -12345);
  }
  return t;
}

/// A poisoned 1-D tensor of `n` elements.
inline at::Tensor poisoned(int64_t n, at::ScalarType dtype) {
  return poison_(at::empty({n}, dtype));
}

/// A poisoned tensor with `t`'s sizes, strides, dtype and device: a scatter destination.
inline at::Tensor poisoned_like(const at::Tensor& t) {
  return poison_(at::empty_strided(t.sizes(), t.strides(), t.options()));
}

/// `plan.gather(out)` into a poisoned buffer, so that zeros the plan must write (padding,
/// ZeroFill placeholders) are really written. `Plan`: flatgather::torch::Plan.
template <class Plan>
at::Tensor gather_poisoned(const Plan& plan) {
  at::Tensor out =
      poison_(at::empty({plan.numel()}, at::TensorOptions(plan.dtype()).device(plan.device())));
  plan.gather(out);
  return out;
}

/// The bytes of `t` in its logical element order.
inline at::Tensor bytes_of(const at::Tensor& t) {
  return t.contiguous().reshape(-1).view(at::kByte);
}

/// The reference byte buffer (NOTE: [byte plans]), built without the library: each tensor's
/// bytes at the next multiple of max(align, element size), zeros between and after.
inline at::Tensor reference_bytes(const std::vector<at::Tensor>& tensors, int64_t align) {
  std::vector<at::Tensor> pieces;
  int64_t pos = 0;
  auto pad = [&](int64_t to) {
    if (to > pos) pieces.push_back(at::zeros({to - pos}, at::kByte));
    pos = std::max(pos, to);
  };
  for (const at::Tensor& t : tensors) {
    const int64_t a = std::max<int64_t>(align, t.element_size());
    pad((pos + a - 1) / a * a);
    pieces.push_back(bytes_of(t));
    pos += t.numel() * t.element_size();
  }
  const int64_t a = std::max<int64_t>(align, 1);
  pad((pos + a - 1) / a * a);
  return at::cat(pieces);
}

}  // namespace fgtest

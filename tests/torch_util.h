#pragma once
// LibTorch helpers for tests: random tensors of every dtype, references, bitwise compares.
#include <torch/torch.h>

#include <algorithm>
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

/// The reference gather: torch::cat of every reshape(-1), cast to `dtype`.
inline at::Tensor reference_gather(const std::vector<at::Tensor>& tensors, at::ScalarType dtype) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.reshape(-1).to(dtype));
  return at::cat(flat);
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

/// A sentinel-filled tensor, so an element the code under test forgets shows up.
inline at::Tensor poisoned(int64_t n, at::ScalarType dtype) {
  at::Tensor t = at::empty({n}, dtype);
  if (at::isFloatingType(dtype)) {
    t.fill_(-1234.5);
  } else if (dtype == at::kBool) {
    t.view(at::kByte).fill_(0x5A);  // not a valid bool: any unwritten element differs in bits
  } else {
    t.fill_(77);
  }
  return t;
}

/// The bytes of `t` in its logical element order.
inline at::Tensor bytes_of(const at::Tensor& t) { return t.contiguous().reshape(-1).view(at::kByte); }

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

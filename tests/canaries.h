#pragma once
// Guard bytes around test buffers, on any device (NOTE: [canaries]).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fgtest {

// NOTE: [canaries]
// A kernel that writes a few bytes past a tensor or a flat buffer usually lands in the
// allocator's slack (a caching allocator rounds every block up), where no later read sees it.
// The tests therefore place each tensor and flat buffer inside a larger allocation with
// Canaries::kBytes of a random pattern before and after it (for a strided view: around the
// whole storage its strides reach, from its first element to its furthest one) and check
// after each call that every pattern byte is intact; the check names the buffer and the byte.
// Bytes inside a storage that a view skips (gaps of a strided view) are not canaries: the
// tests that make such views compare their whole storage instead. compute-sanitizer finds the
// same overruns, but only on the subset of test_cuda that scripts/gpu-check.sh runs under it.

/// Allocates tensors inside canaries and checks them. Not thread-safe; the buffers live as
/// long as this object (or until clear()).
class Canaries {
 public:
  /// Guard bytes on each side of every buffer (a multiple of every element size).
  static constexpr int64_t kBytes = 64;

  explicit Canaries(std::uint64_t seed = 0x6CA4A41E5ull) : rng_(seed) {}

  /// A tensor with `sizes`, `strides` (non-negative) and `options` whose storage starts
  /// `shift` elements after kBytes of guard pattern and is followed by kBytes more. Its
  /// elements are uninitialised (poison or fill them). `label` names it in a failed check.
  at::Tensor empty_strided(at::IntArrayRef sizes, at::IntArrayRef strides,
                           const at::TensorOptions& options, std::string label, int64_t shift = 0) {
    const at::ScalarType dtype = options.dtype().toScalarType();
    const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
    int64_t extent = 1;  // elements from the first to the furthest one the strides reach
    for (std::size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] == 0) extent = 0;
      if (extent != 0) extent += (sizes[d] - 1) * strides[d];
    }
    Entry e;
    e.head = kBytes + shift * element;
    e.body = extent * element;
    const int64_t total = e.head + e.body + kBytes;
    // Only the guards get the pattern (a buffer may be gigabytes): two small copies.
    e.expected = at::empty({e.head + kBytes}, at::kByte);
    auto* p = e.expected.data_ptr<std::uint8_t>();
    for (int64_t i = 0; i < e.expected.numel(); ++i) p[i] = static_cast<std::uint8_t>(rng_() >> 56);
    e.whole = at::empty({total}, at::TensorOptions(at::kByte).device(options.device()));
    e.whole.narrow(0, 0, e.head).copy_(e.expected.narrow(0, 0, e.head));
    e.whole.narrow(0, e.head + e.body, kBytes).copy_(e.expected.narrow(0, e.head, kBytes));
    e.label = std::move(label);
    at::Tensor typed = e.whole.view(dtype);
    entries_.push_back(std::move(e));
    return typed.as_strided(sizes, strides, entries_.back().head / element);
  }

  /// A contiguous empty_strided.
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options, std::string label,
                   int64_t shift = 0) {
    std::vector<int64_t> strides(sizes.size(), 1);
    for (std::size_t d = sizes.size(); d > 1; --d)
      strides[d - 2] = strides[d - 1] * std::max<int64_t>(sizes[d - 1], 1);
    return empty_strided(sizes, strides, options, std::move(label), shift);
  }

  /// A contiguous copy of `t` on `device`, inside canaries.
  at::Tensor copy_of(const at::Tensor& t, at::Device device, std::string label, int64_t shift = 0) {
    at::Tensor out = empty(t.sizes(), t.options().device(device), std::move(label), shift);
    out.copy_(t);
    return out;
  }

  /// Success when every canary byte of every buffer is as written; else the first changed
  /// byte of each buffer that was overrun. One copy to the host per device.
  ::testing::AssertionResult intact() const {
    std::vector<at::Tensor> guards;
    std::vector<at::Tensor> expected;
    for (const Entry& e : entries_) {
      guards.push_back(e.whole.narrow(0, 0, e.head));
      guards.push_back(e.whole.narrow(0, e.head + e.body, kBytes));
      expected.push_back(e.expected);
    }
    if (entries_.empty()) return ::testing::AssertionSuccess();
    // Every entry's guards, on the host in one go (per device: at::cat needs one device).
    std::vector<at::Tensor> by_device;
    std::vector<at::Device> devices;
    for (const at::Tensor& g : guards) {
      bool seen = false;
      for (const at::Device& d : devices) seen = seen || d == g.device();
      if (!seen) devices.push_back(g.device());
    }
    std::vector<at::Tensor> now(guards.size());
    for (const at::Device& d : devices) {
      std::vector<at::Tensor> mine;
      std::vector<std::size_t> where;
      for (std::size_t i = 0; i < guards.size(); ++i) {
        if (guards[i].device() != d) continue;
        mine.push_back(guards[i]);
        where.push_back(i);
      }
      const at::Tensor host = at::cat(mine).to(at::kCPU, false, /*copy=*/true);
      int64_t at_byte = 0;
      for (std::size_t k = 0; k < where.size(); ++k) {
        now[where[k]] = host.narrow(0, at_byte, mine[k].numel());
        at_byte += mine[k].numel();
      }
    }
    std::ostringstream bad;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      const at::Tensor got = at::cat({now[2 * i], now[2 * i + 1]});
      const auto* g = got.data_ptr<std::uint8_t>();
      const auto* w = e.expected.data_ptr<std::uint8_t>();
      for (int64_t b = 0; b < got.numel(); ++b) {
        if (g[b] == w[b]) continue;
        bad << "canary of '" << e.label << "' (" << e.body << " bytes on " << e.whole.device()
            << ") overwritten: ";
        if (b < e.head) {
          bad << "byte " << e.head - b << " before its start";
        } else {
          bad << "byte " << b - e.head << " after its end (0: the first byte past it)";
        }
        bad << " is 0x" << std::hex << int{g[b]} << ", was 0x" << int{w[b]} << std::dec << "\n";
        break;
      }
    }
    if (bad.str().empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad.str();
  }

  /// Buffers held.
  std::size_t size() const { return entries_.size(); }

  /// Forgets (and so frees) every buffer: for tests that need the memory back.
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    at::Tensor whole;     // uint8: head guard, the storage, tail guard
    at::Tensor expected;  // uint8 on the host: the head and tail guards as written
    int64_t head = 0;     // guard bytes before the storage (kBytes + the shift)
    int64_t body = 0;     // the storage's bytes
    std::string label;
  };
  std::mt19937_64 rng_;
  std::vector<Entry> entries_;
};

}  // namespace fgtest

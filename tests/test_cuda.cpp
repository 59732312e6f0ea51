// GPU tests of the CUDA executor: every result is compared bit for bit with the CPU path and
// with LibTorch (torch::cat of reshape(-1), .to(dtype)). Each test skips, with the reason,
// where no CUDA device (or no CUDA-enabled LibTorch) is present, or fails where the run
// demands a GPU (FLATGATHER_REQUIRE_GPU=1, tests/test_util.h). The GPU tensors and flat
// buffers the tests make sit inside canaries (NOTE: [canaries] in tests/canaries.h), checked
// at every device_sync() and at the end of each test.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "flatgather/plan.h"
#include "flatgather/adopt.h"
#include "flatgather/torch.h"
#include "canaries.h"
#include "test_util.h"
#include "torch_util.h"

namespace fg = flatgather;
namespace fgt = flatgather::torch;

/// Skips the test without a CUDA device; else opens the test's canary scope (CanaryScope).
#define SKIP_WITHOUT_CUDA()                                                              \
  do {                                                                                   \
    if (!fg::cuda_available())                                                           \
      FG_SKIP_WITHOUT_GPU("no CUDA device: flatgather::cuda_available() is false");      \
    if (!::torch::cuda::is_available())                                                  \
      FG_SKIP_WITHOUT_GPU(                                                               \
          "no CUDA device for LibTorch (a CPU-only LibTorch cannot make CUDA tensors)"); \
  } while (false);                                                                       \
  const CanaryScope fg_canary_scope_

#define CUDA_OK(call) \
  ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

namespace {

const at::Device kCuda(at::kCUDA, 0);

/// The running test's canaries (NOTE: [canaries]): SKIP_WITHOUT_CUDA() opens a scope for each
/// GPU test, the helpers below allocate every GPU buffer in it, device_sync() checks it, and
/// its end checks it once more and frees the buffers.
fgtest::Canaries* g_canaries = nullptr;

class CanaryScope {
 public:
  CanaryScope() { g_canaries = &canaries_; }
  ~CanaryScope() {
    try {
      EXPECT_TRUE(canaries_.intact()) << "(checked at the end of the test)";
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the final canary check threw: " << e.what();
    }
    g_canaries = nullptr;
  }
  CanaryScope(const CanaryScope&) = delete;
  CanaryScope& operator=(const CanaryScope&) = delete;

 private:
  fgtest::Canaries canaries_;
};

fgtest::Canaries& canaries() {
  if (g_canaries == nullptr) throw std::logic_error("no canary scope: SKIP_WITHOUT_CUDA() first");
  return *g_canaries;
}

/// A contiguous GPU copy of `values` (any device) inside canaries, its storage `shift` elements
/// past the head guard (a misaligned buffer); `label` names it when a canary breaks.
at::Tensor to_gpu(const at::Tensor& values, std::string label = "", int64_t shift = 0) {
  if (label.empty()) {
    std::ostringstream os;
    os << "buffer " << canaries().size() << " " << values.sizes() << " " << values.scalar_type();
    label = os.str();
  }
  return canaries().copy_of(values, kCuda, std::move(label), shift);
}

/// The same tensor on the CPU and on the GPU, with the same view applied to both.
struct Pair {
  at::Tensor cpu;
  at::Tensor gpu;
};

Pair make_pair(const at::Tensor& base_cpu,
               const std::function<at::Tensor(const at::Tensor&)>& view = nullptr) {
  const at::Tensor base_gpu = to_gpu(base_cpu.contiguous());
  if (!view) return {base_cpu.contiguous(), base_gpu};
  return {view(base_cpu.contiguous()), view(base_gpu)};
}

std::vector<at::Tensor> cpus(const std::vector<Pair>& pairs) {
  std::vector<at::Tensor> out;
  for (const Pair& p : pairs) out.push_back(p.cpu);
  return out;
}
std::vector<at::Tensor> gpus(const std::vector<Pair>& pairs) {
  std::vector<at::Tensor> out;
  for (const Pair& p : pairs) out.push_back(p.gpu);
  return out;
}

/// Values that exercise rounding: infinities, signed zero, subnormals of every type,
/// float16 overflow and its tie, bfloat16 ties, float32 overflow from float64, NaN.
at::Tensor with_specials(at::Tensor t) {
  if (!at::isFloatingType(t.scalar_type()) || t.numel() < 16) return t;
  const double specials[] = {std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             -0.0,
                             1e-40,
                             6e-8,
                             -3e-8,
                             65520.0,
                             65504.0,
                             1.0 + 1.0 / 256,
                             1.0 + 3.0 / 512,
                             1e300,
                             -1e-310,
                             std::nan(""),
                             3.0000001,
                             -2.5e-39};
  at::Tensor d = t.to(at::kDouble).reshape(-1).clone();
  for (std::size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); ++i) {
    d[static_cast<int64_t>(i * 3)] = specials[i];
  }
  return d.reshape(t.sizes()).to(t.scalar_type());
}

/// Tensors of `dtype`: contiguous, 0-d, empty, odd offset, transposed, channels_last, sliced.
std::vector<Pair> sample_tensors(at::ScalarType dtype, std::uint64_t seed) {
  at::manual_seed(seed);
  std::vector<Pair> p;
  p.push_back(make_pair(fgtest::random_tensor({7}, dtype)));
  p.push_back(make_pair(fgtest::random_tensor({3, 5}, dtype)));
  p.push_back(make_pair(fgtest::random_tensor({}, dtype)));
  p.push_back(make_pair(fgtest::random_tensor({0}, dtype)));
  p.push_back(make_pair(with_specials(fgtest::random_tensor({1000}, dtype))));
  p.push_back(
      make_pair(fgtest::random_tensor({33, 65}, dtype), [](const at::Tensor& t) { return t.t(); }));
  p.push_back(make_pair(fgtest::random_tensor({2, 3, 5, 7}, dtype), [](const at::Tensor& t) {
    return t.contiguous(at::MemoryFormat::ChannelsLast);
  }));
  p.push_back(make_pair(fgtest::random_tensor({10, 12}, dtype),
                        [](const at::Tensor& t) { return t.slice(1, 1, 12, 3); }));
  p.push_back(make_pair(fgtest::random_tensor({4099}, dtype),
                        [](const at::Tensor& t) { return t.narrow(0, 1, 4097); }));
  return p;
}

/// The expected flat buffer: each tensor's reshape(-1).to(dtype) at its segment, zeros between.
at::Tensor expected_flat(const std::vector<at::Tensor>& tensors, const fg::Layout& layout,
                         at::ScalarType dtype) {
  at::Tensor out = at::zeros({layout.numel()}, dtype);
  const auto& segments = layout.segments();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    out.narrow(0, segments[i].offset, segments[i].numel).copy_(tensors[i].reshape(-1).to(dtype));
  }
  return out;
}

/// The core library's view of a CUDA tensor (for the core API's non-const calls).
fg::TensorRef cuda_ref(const at::Tensor& t, const std::string& name) {
  fg::TensorRef r;
  r.data = t.data_ptr();
  r.dtype = fgt::to_dtype(t.scalar_type());
  r.sizes = t.sizes().vec();
  r.strides = t.strides().vec();
  r.device = fg::Device::cuda(static_cast<int>(t.device().index()));
  r.name = name;
  return r;
}

/// A poisoned GPU flat buffer of `n` elements inside canaries.
at::Tensor poisoned_gpu(int64_t n, at::ScalarType dtype, int64_t shift = 0) {
  return to_gpu(fgtest::poisoned(n, dtype), "flat buffer of " + std::to_string(n), shift);
}

void poison(const at::Tensor& t) {
  fgtest::poison_(t);
}

/// Waits for the device, then checks every canary of the test (NOTE: [canaries]).
void device_sync() {
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(canaries().intact());
}

/// Sets FLATGATHER_CUDA_TUNING for a scope (NOTE: [tuning overrides] in kernels/tuning.h).
class TuningOverride {
 public:
  explicit TuningOverride(const char* spec) { setenv("FLATGATHER_CUDA_TUNING", spec, 1); }
  ~TuningOverride() { unsetenv("FLATGATHER_CUDA_TUNING"); }
  TuningOverride(const TuningOverride&) = delete;
  TuningOverride& operator=(const TuningOverride&) = delete;
};

const at::ScalarType kFloats[] = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};
const at::ScalarType kOthers[] = {at::kChar, at::kByte, at::kShort, at::kInt, at::kLong, at::kBool};

/// Poisons every tensor on both devices, then scatters `source` through both plans (the GPU
/// one from a device copy, which it returns for a later scatter_add).
at::Tensor scatter_both(const std::vector<Pair>& tensors, fgt::Plan& gpu_plan, fgt::Plan& cpu_plan,
                        const at::Tensor& source) {
  for (const Pair& p : tensors) {
    poison(p.gpu);
    poison(p.cpu);
  }
  device_sync();
  const at::Tensor source_gpu = to_gpu(source, "source flat");
  gpu_plan.core().scatter(source_gpu.data_ptr(), source.numel(), nullptr);
  device_sync();
  cpu_plan.scatter(source);
  return source_gpu;
}

}  // namespace

TEST(CudaRuntime, AvailabilityMatchesTheRuntime) {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess;
  (void)cudaGetLastError();
  EXPECT_EQ(fg::cuda_device_count(), ok ? count : 0);
  EXPECT_EQ(fg::cuda_available(), ok && count > 0);
}

// Gather, scatter and scatter_add for every (tensor dtype, flat dtype) pair the library
// supports, with and without padding, against the CPU path and LibTorch.
TEST(CudaGatherScatter, EveryDtypePair) {
  SKIP_WITHOUT_CUDA();
  std::vector<std::pair<at::ScalarType, at::ScalarType>> pairs;
  for (at::ScalarType t : kFloats) {
    for (at::ScalarType f : kFloats) pairs.emplace_back(t, f);
  }
  for (at::ScalarType t : kOthers) pairs.emplace_back(t, t);
  std::uint64_t seed = 1;
  for (const auto& [tdt, fdt] : pairs) {
    for (std::int64_t align : {0, 64}) {
      SCOPED_TRACE(std::string("tensor ") + c10::toString(tdt) + " flat " + c10::toString(fdt) +
                   " align " + std::to_string(align));
      const std::vector<Pair> tensors = sample_tensors(tdt, seed++);
      fgt::Options opt;
      opt.dtype = fdt;
      opt.align_bytes = align;
      fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
      fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
      ASSERT_EQ(gpu_plan.layout(), cpu_plan.layout());
      const int64_t n = gpu_plan.numel();
      EXPECT_NE(gpu_plan.core().describe().find("cuda:0"), std::string::npos)
          << gpu_plan.core().describe();

      // gather
      at::Tensor flat = poisoned_gpu(n, fdt);
      gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
      device_sync();
      const at::Tensor got = flat.cpu();
      EXPECT_TRUE(fgtest::bits_equal(got, cpu_plan.gather()));
      EXPECT_TRUE(fgtest::bits_equal(got, expected_flat(cpus(tensors), gpu_plan.layout(), fdt)));
      if (align == 0) {
        EXPECT_TRUE(fgtest::bits_equal(got, fgtest::reference_gather(cpus(tensors), fdt)));
      }

      // scatter: a fresh flat buffer into poisoned tensors
      const at::Tensor source = with_specials(fgtest::random_tensor({n}, fdt));
      const at::Tensor source_gpu = scatter_both(tensors, gpu_plan, cpu_plan, source);
      const auto& segments = gpu_plan.layout().segments();
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        SCOPED_TRACE("tensor " + std::to_string(i));
        const at::Tensor back = tensors[i].gpu.cpu();
        EXPECT_TRUE(fgtest::bits_equal(back, tensors[i].cpu));
        const at::Tensor want = source.narrow(0, segments[i].offset, segments[i].numel)
                                    .to(tdt)
                                    .reshape(tensors[i].cpu.sizes());
        EXPECT_TRUE(fgtest::bits_equal(back, want));
      }

      // scatter_add: the bits of LibTorch's `t + alpha * v` rounded once
      // (fgtest::reference_add_scaled) and of the CPU path
      if (at::isFloatingType(tdt)) {
        const double alpha = -0.37;
        std::vector<at::Tensor> before;
        for (const Pair& p : tensors) {
          const at::Tensor v = fgtest::random_tensor(p.cpu.sizes(), tdt);
          if (p.cpu.numel() != 0) {
            p.cpu.copy_(v);
            p.gpu.copy_(v.to(kCuda));
          }
          before.push_back(p.cpu.clone());
        }
        device_sync();
        gpu_plan.core().scatter_add(source_gpu.data_ptr(), n, alpha, nullptr);
        device_sync();
        cpu_plan.scatter_add(source, alpha);
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          SCOPED_TRACE("scatter_add tensor " + std::to_string(i));
          const at::Tensor got = tensors[i].gpu.cpu();
          const at::Tensor v = source.narrow(0, segments[i].offset, segments[i].numel);
          EXPECT_TRUE(fgtest::bits_equal(got, fgtest::reference_add_scaled(before[i], v, alpha)));
          EXPECT_TRUE(fgtest::bits_equal(got, tensors[i].cpu));
        }
      }
    }
  }
}

// Tensors of several dtypes in one plan, cast into one flat dtype, all in one launch.
TEST(CudaGatherScatter, MixedDtypesOneLaunch) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(11);
  std::vector<Pair> tensors;
  for (at::ScalarType t : kFloats) {
    tensors.push_back(make_pair(with_specials(fgtest::random_tensor({129}, t))));
    tensors.push_back(
        make_pair(fgtest::random_tensor({6, 7}, t), [](const at::Tensor& x) { return x.t(); }));
  }
  for (at::ScalarType f : kFloats) {
    fgt::Options opt;
    opt.dtype = f;
    fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
    fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
    at::Tensor flat = poisoned_gpu(gpu_plan.numel(), f);
    gpu_plan.core().gather(flat.data_ptr(), flat.numel(), nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather()));
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), fgtest::reference_gather(cpus(tensors), f)));
  }
}

// Sources and flat buffers at every element offset: the scalar head and tail and the
// unaligned side of the vector split, on both misaligned paths.
TEST(CudaGatherScatter, OddAlignments) {
  SKIP_WITHOUT_CUDA();
  // Both misaligned paths (NOTE: [misaligned copies] in kernels/copy.cuh).
  for (const char* spec : {"misaligned=old", "misaligned=new"}) {
    TuningOverride tuning(spec);
    SCOPED_TRACE(spec);
    at::manual_seed(5);
    for (at::ScalarType tdt : {at::kFloat, at::kBFloat16, at::kByte, at::kDouble}) {
      const at::ScalarType fdt = tdt == at::kBFloat16 ? at::kFloat : tdt;
      for (int64_t flat_shift = 0; flat_shift < 4; ++flat_shift) {
        SCOPED_TRACE(std::string(c10::toString(tdt)) + " flat shift " + std::to_string(flat_shift));
        const at::Tensor base = fgtest::random_tensor({5000}, tdt);
        std::vector<Pair> tensors;
        int64_t at_offset = 1;
        for (int64_t len : {37, 1, 2, 3, 129, 1000, 17, 64, 5}) {
          tensors.push_back(
              make_pair(base, [=](const at::Tensor& b) { return b.narrow(0, at_offset, len); }));
          at_offset += len + 1 + len % 3;  // gaps keep the views apart at varying alignments
        }
        // The GPU views must share one GPU base, like the CPU views share `base`.
        const at::Tensor base_gpu = to_gpu(base, "base");
        at_offset = 1;
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          const int64_t len = tensors[i].cpu.numel();
          tensors[i].gpu = base_gpu.narrow(0, at_offset, len);
          at_offset += len + 1 + len % 3;
        }
        fgt::Options opt;
        opt.dtype = fdt;
        fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
        fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
        const int64_t n = gpu_plan.numel();
        at::Tensor storage = poisoned_gpu(n + 8, fdt);
        at::Tensor flat = storage.narrow(0, flat_shift, n);
        gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
        device_sync();
        EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather()));
        EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), fgtest::reference_gather(cpus(tensors), fdt)));
        // Elements outside the flat view are untouched.
        const at::Tensor poison_ref = fgtest::poisoned(8, fdt);
        EXPECT_TRUE(fgtest::bits_equal(storage.narrow(0, 0, flat_shift).cpu(),
                                       poison_ref.narrow(0, 0, flat_shift)));
        EXPECT_TRUE(fgtest::bits_equal(storage.narrow(0, n + flat_shift, 8 - flat_shift).cpu(),
                                       poison_ref.narrow(0, 0, 8 - flat_shift)));

        // scatter back from a new flat at the same odd offset; the gaps of `base` stay intact
        const at::Tensor source = fgtest::random_tensor({n}, fdt);
        flat.copy_(source.to(kCuda));
        device_sync();
        gpu_plan.core().scatter(flat.data_ptr(), n, nullptr);
        device_sync();
        cpu_plan.scatter(source);
        EXPECT_TRUE(fgtest::bits_equal(base_gpu.cpu(), base));
      }
    }
  }
}

TEST(CudaGatherScatter, EmptyAndSingleTensors) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(3);
  // Only empty tensors: nothing to launch, nothing to write. The empty tensors are views into
  // a poisoned buffer and the empty flat is a view into another: both stay poisoned.
  {
    const at::Tensor tensor_storage = poisoned_gpu(8, at::kFloat);
    const at::Tensor flat_storage = poisoned_gpu(8, at::kFloat);
    fgt::Plan plan = fgt::Plan::from_tensors(
        {tensor_storage.narrow(0, 2, 0), tensor_storage.narrow(0, 5, 0).reshape({3, 0})});
    EXPECT_EQ(plan.numel(), 0);
    at::Tensor flat = flat_storage.narrow(0, 3, 0);
    plan.core().gather(flat.data_ptr(), 0, nullptr);
    plan.core().scatter(flat.data_ptr(), 0, nullptr);
    plan.core().scatter_add(flat.data_ptr(), 0, 2.0, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(tensor_storage.cpu(), fgtest::poisoned(8, at::kFloat)));
    EXPECT_TRUE(fgtest::bits_equal(flat_storage.cpu(), fgtest::poisoned(8, at::kFloat)));
  }
  for (int64_t n : {1, 3, 1 << 20}) {
    SCOPED_TRACE("one tensor of " + std::to_string(n));
    std::vector<Pair> tensors = {make_pair(fgtest::random_tensor({n}, at::kFloat))};
    fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors));
    at::Tensor flat = poisoned_gpu(n, at::kFloat);
    gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), tensors[0].cpu));
    const at::Tensor source = fgtest::random_tensor({n}, at::kFloat);
    flat.copy_(source.to(kCuda));
    poison(tensors[0].gpu);
    device_sync();
    gpu_plan.core().scatter(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(tensors[0].gpu.cpu(), source));
  }
}

TEST(CudaGatherScatter, HundredThousandTensors) {
  SKIP_WITHOUT_CUDA();
  std::mt19937_64 rng(2024);
  at::manual_seed(2024);
  const at::Tensor base = fgtest::random_tensor({800'000}, at::kFloat);
  const at::Tensor base_gpu = to_gpu(base, "base");
  std::vector<Pair> tensors;
  int64_t offset = 0;
  for (int i = 0; i < 100'000; ++i) {
    const int64_t len = static_cast<int64_t>(rng() % 6);  // 0..5 elements
    tensors.push_back({base.narrow(0, offset, len), base_gpu.narrow(0, offset, len)});
    offset += len + static_cast<int64_t>(rng() % 3);
  }
  for (at::ScalarType fdt : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(fdt));
    fgt::Options opt;
    opt.dtype = fdt;
    opt.check_tensors = false;
    fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
    fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
    const int64_t n = gpu_plan.numel();
    at::Tensor flat = poisoned_gpu(n, fdt);
    gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather()));
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), fgtest::reference_gather(cpus(tensors), fdt)));
  }
  // scatter from a float32 flat: the GPU base equals the CPU base afterwards
  fgt::Options opt;
  opt.check_tensors = false;
  fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
  fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
  const at::Tensor source = fgtest::random_tensor({gpu_plan.numel()}, at::kFloat);
  const at::Tensor source_gpu = to_gpu(source, "source flat");
  gpu_plan.core().scatter(source_gpu.data_ptr(), source.numel(), nullptr);
  device_sync();
  cpu_plan.scatter(source);
  EXPECT_TRUE(fgtest::bits_equal(base_gpu.cpu(), base));
}

/// Skips the test (also under FLATGATHER_REQUIRE_GPU=1: the device is there, just too small)
/// unless `gib` GiB of GPU memory are free.
#define SKIP_WITHOUT_FREE_GIB(gib)                                                           \
  do {                                                                                       \
    size_t free_bytes = 0, total_bytes = 0;                                                  \
    CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));                                      \
    if (free_bytes < (size_t{gib} << 30))                                                    \
      GTEST_SKIP() << "needs " << (gib) << " GiB of free GPU memory, " << (free_bytes >> 20) \
                   << " MiB free";                                                           \
  } while (false)

// A flat buffer over 4 GiB and over 2^31 elements: 64-bit offsets everywhere.
TEST(CudaGatherScatter, FlatOver4GiB) {
  SKIP_WITHOUT_CUDA();
  SKIP_WITHOUT_FREE_GIB(24);
  const auto u8 = at::TensorOptions(at::kByte).device(kCuda);
  {  // uint8: 2^32 + 7 elements, then a small tensor past 2^32
    const int64_t big = (int64_t{1} << 32) + 7;
    at::Tensor a = canaries().empty({big}, u8, "a").random_(0, 256);
    at::Tensor b = canaries().empty({13}, u8, "b").random_(0, 256);
    fgt::Plan plan = fgt::Plan::from_tensors({a, b});
    const int64_t n = plan.numel();
    at::Tensor flat = canaries().empty({n}, u8, "flat").fill_(0xA5);
    device_sync();
    plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(at::equal(flat.narrow(0, 0, big), a));
    EXPECT_TRUE(at::equal(flat.narrow(0, big, 13), b));
    flat.bitwise_xor_(0x3C);
    a.zero_();
    b.zero_();
    device_sync();
    plan.core().scatter(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(at::equal(flat.narrow(0, 0, big), a));
    EXPECT_TRUE(at::equal(flat.narrow(0, big, 13), b));
    canaries().clear();  // the memory back for the next part
  }
  {  // bfloat16 -> float32: 2^31 + 9 elements, an 8 GiB flat
    const int64_t big = (int64_t{1} << 31) + 9;
    const auto bf16 = at::TensorOptions(at::kBFloat16).device(kCuda);
    at::Tensor a = canaries().empty({big}, bf16, "a").normal_();
    at::Tensor b = canaries().empty({5}, bf16, "b").normal_();
    fgt::Options opt;
    opt.dtype = at::kFloat;
    fgt::Plan plan = fgt::Plan::from_tensors({b, a}, {}, opt);
    const int64_t n = plan.numel();
    at::Tensor flat =
        canaries().empty({n}, at::TensorOptions(at::kFloat).device(kCuda), "flat").fill_(-7.0);
    device_sync();
    plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(at::equal(flat.narrow(0, 0, 5), b.to(at::kFloat)));
    EXPECT_TRUE(at::equal(flat.narrow(0, 5, big), a.to(at::kFloat)));  // widening is exact
  }
}

// scatter_add with a cast beyond 4 GiB: a bfloat16 flat buffer of more than 2^31 elements
// (byte offsets past 2^32) into float32 tensors of 8 GiB (byte offsets past 2^33), a strided
// tensor placed after both boundaries. Every element against LibTorch's `t + alpha * v` in
// float64 rounded once to float32 (exact here: alpha, v and t have short mantissas, so the
// float64 sum is exact for all but |values| 2^45 apart), and windows at each boundary against
// fgtest::reference_add_scaled (one fused multiply-add per element, on the CPU). About 16 GiB
// of memory and about 100 GiB moved (fills, the call, the checks): well under a second of
// device time on an H200.
TEST(CudaGatherScatter, ScatterAddCastOver4GiB) {
  SKIP_WITHOUT_CUDA();
  SKIP_WITHOUT_FREE_GIB(24);
  at::manual_seed(65);
  const double alpha = -0.75;
  const int64_t big = (int64_t{1} << 31) + 11;
  const auto f32 = at::TensorOptions(at::kFloat).device(kCuda);
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(kCuda);
  // float32 tensors holding bfloat16 values; `big_before` keeps the big one's start (exactly).
  const at::Tensor big_before = at::empty({big}, bf16).normal_();
  const at::Tensor small_before = at::randn({3}).to(at::kBFloat16).to(at::kFloat);
  const at::Tensor strided_before = at::randn({7, 5}).to(at::kBFloat16).to(at::kFloat);
  const at::Tensor p0 = to_gpu(small_before, "p0");
  const at::Tensor p1 = canaries().empty({big}, f32, "p1").copy_(big_before);
  const at::Tensor p2 = to_gpu(strided_before, "p2").t();
  fg::PlanOptions options;
  options.flat_dtype = fg::DType::BFloat16;
  fg::Plan plan =
      fg::Plan::build({cuda_ref(p0, "p0"), cuda_ref(p1, "p1"), cuda_ref(p2, "p2")}, options);
  const int64_t off1 = 3, off2 = 3 + big, n = 3 + big + 35;
  ASSERT_EQ(plan.layout().numel(), n);
  ASSERT_EQ(plan.layout().segments()[1].offset, off1);
  ASSERT_EQ(plan.layout().segments()[2].offset, off2);
  const at::Tensor flat = canaries().empty({n}, bf16, "flat").normal_();
  device_sync();

  plan.scatter_add(flat.data_ptr(), n, alpha, nullptr);
  device_sync();

  // Every element of the big tensor, in chunks on the GPU (float64 t + alpha * v, rounded once).
  const int64_t chunk = int64_t{1} << 27;
  for (int64_t at_element = 0; at_element < big; at_element += chunk) {
    const int64_t len = std::min(chunk, big - at_element);
    const at::Tensor want = (big_before.narrow(0, at_element, len).to(at::kDouble) +
                             alpha * flat.narrow(0, off1 + at_element, len).to(at::kDouble))
                                .to(at::kFloat);
    if (!at::equal(p1.narrow(0, at_element, len), want)) {
      ADD_FAILURE() << "p1 elements " << at_element << ".." << at_element + len
                    << " differ from LibTorch's float64 t + alpha * v";
      break;
    }
  }
  // Windows at the boundaries, against the CPU reference: p1's start, its byte 2^32, the flat
  // buffer's element 2^31 (its byte 2^32), p1's end; p0 and p2 whole. A window is centred on
  // its boundary and kept inside p1 (the flat buffer's 2^31 lies 2^31 - 3 elements into p1,
  // closer than half a window to p1's end).
  const int64_t window = 4096;
  for (int64_t boundary : {int64_t{0}, int64_t{1} << 30, (int64_t{1} << 31) - off1, big}) {
    const int64_t at_element = std::clamp<int64_t>(boundary - window / 2, 0, big - window);
    SCOPED_TRACE("p1 window at element " + std::to_string(at_element));
    const at::Tensor before = big_before.narrow(0, at_element, window).cpu().to(at::kFloat);
    const at::Tensor v = flat.narrow(0, off1 + at_element, window).cpu();
    EXPECT_TRUE(fgtest::bits_equal(p1.narrow(0, at_element, window).cpu(),
                                   fgtest::reference_add_scaled(before, v, alpha)));
  }
  EXPECT_TRUE(fgtest::bits_equal(
      p0.cpu(), fgtest::reference_add_scaled(small_before, flat.narrow(0, 0, 3).cpu(), alpha)));
  EXPECT_TRUE(fgtest::bits_equal(
      p2.cpu(),
      fgtest::reference_add_scaled(strided_before.t(), flat.narrow(0, off2, 35).cpu(), alpha)));
}

// Graph capture: one kernel node, no memcpy node; replays read the tensors' current values.
TEST(CudaGraph, CaptureGatherScatterScatterAdd) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(9);
  std::vector<Pair> tensors = sample_tensors(at::kBFloat16, 99);
  fgt::Options opt;
  opt.dtype = at::kFloat;
  opt.align_bytes = 16;
  fgt::Plan plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
  fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
  const int64_t n = plan.numel();
  at::Tensor flat = poisoned_gpu(n, at::kFloat);
  device_sync();
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  auto capture = [&](const std::function<void()>& work) {
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    work();
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    size_t count = 0;
    EXPECT_EQ(cudaGraphGetNodes(graph, nullptr, &count), cudaSuccess);
    EXPECT_EQ(count, 1u) << "one kernel launch per call";
    std::vector<cudaGraphNode_t> nodes(count);
    EXPECT_EQ(cudaGraphGetNodes(graph, nodes.data(), &count), cudaSuccess);
    for (cudaGraphNode_t node : nodes) {
      cudaGraphNodeType type;
      EXPECT_EQ(cudaGraphNodeGetType(node, &type), cudaSuccess);
      EXPECT_EQ(type, cudaGraphNodeTypeKernel) << "no memcpy or memset node";
    }
    cudaGraphExec_t exec = nullptr;
    EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    return exec;
  };

  cudaGraphExec_t gather = capture([&] { plan.core().gather(flat.data_ptr(), n, stream); });
  cudaGraphExec_t scatter = capture([&] { plan.core().scatter(flat.data_ptr(), n, stream); });
  cudaGraphExec_t scatter_add =
      capture([&] { plan.core().scatter_add(flat.data_ptr(), n, 0.5, stream); });

  for (int replay = 0; replay < 3; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    // New tensor values, then replay gather: the flat holds the new values.
    for (const Pair& p : tensors) {
      if (p.cpu.numel() == 0) continue;
      const at::Tensor v = fgtest::random_tensor(p.cpu.sizes(), at::kBFloat16);
      p.cpu.copy_(v);
      p.gpu.copy_(v.to(kCuda));
    }
    device_sync();
    CUDA_OK(cudaGraphLaunch(gather, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather()));
    // New flat values, then replay scatter and scatter_add.
    const at::Tensor source = fgtest::random_tensor({n}, at::kFloat);
    flat.copy_(source.to(kCuda));
    device_sync();
    CUDA_OK(cudaGraphLaunch(scatter, stream));
    CUDA_OK(cudaGraphLaunch(scatter_add, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    cpu_plan.scatter(source);
    cpu_plan.scatter_add(source, 0.5);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu)) << "tensor " << i;
    }
  }
  CUDA_OK(cudaGraphExecDestroy(gather));
  CUDA_OK(cudaGraphExecDestroy(scatter));
  CUDA_OK(cudaGraphExecDestroy(scatter_add));
  CUDA_OK(cudaStreamDestroy(stream));
}

// ---- gradient statistics in the gather pass (NOTE: [gather statistics]) ----------------------

/// sample_tensors without the specials (so that the norms are finite).
std::vector<Pair> finite_tensors(at::ScalarType dtype, std::uint64_t seed) {
  std::vector<Pair> p = sample_tensors(dtype, seed);
  const at::Tensor v = fgtest::random_tensor({1000}, dtype);
  p[4].cpu.copy_(v);
  p[4].gpu.copy_(v.to(kCuda));
  return p;
}

struct StatsOut {
  at::Tensor norm, tensor_norms, found_inf, clip_coef;
};

/// Asks for every statistic through the core API, outputs as tensors on `device` (on the GPU
/// inside canaries).
fg::GatherOptions ask_all(StatsOut& o, std::size_t segments, at::Device device, double max_norm) {
  auto output = [&](at::IntArrayRef sizes, const char* name) {
    const at::Tensor t = at::full(sizes, -1.0f, at::kFloat);
    return device.is_cuda() ? to_gpu(t, name) : t;
  };
  o.norm = output({}, "norm");
  o.tensor_norms = output({static_cast<int64_t>(segments)}, "tensor_norms");
  o.found_inf = output({}, "found_inf");
  o.clip_coef = output({}, "clip_coef");
  fg::GatherOptions g;
  g.d_norm = o.norm.data_ptr<float>();
  g.d_tensor_norms = o.tensor_norms.data_ptr<float>();
  g.d_found_inf = o.found_inf.data_ptr<float>();
  g.d_clip_coef = o.clip_coef.data_ptr<float>();
  g.max_norm = max_norm;
  return g;
}

TEST(CudaStats, MatchCpuAndFloat64EveryDtypeSameBitsEveryCall) {
  SKIP_WITHOUT_CUDA();
  for (at::ScalarType src : {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble}) {
    SCOPED_TRACE(std::string("source ") + c10::toString(src));
    std::vector<Pair> tensors = finite_tensors(src, 31);
    fgt::Options opt;
    opt.dtype = at::kFloat;
    opt.align_bytes = 64;
    fgt::Plan gpu = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
    fgt::Plan cpu = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
    const std::size_t segs = gpu.layout().segments().size();
    const at::Tensor scale = to_gpu(at::full({}, 0.375f), "scale");
    const float scale_host = 0.375f;
    StatsOut g1, g2, c;
    fg::GatherOptions og = ask_all(g1, segs, kCuda, 0.5);
    og.scale = fg::Factor::device(scale.data_ptr<float>());
    fg::GatherOptions oc = ask_all(c, segs, at::kCPU, 0.5);
    oc.scale = fg::Factor::device(&scale_host);
    at::Tensor flat = poisoned_gpu(gpu.numel(), at::kFloat);
    at::Tensor cpu_flat = cpu.empty_flat();
    gpu.core().gather(flat.data_ptr(), gpu.numel(), og, nullptr);
    cpu.core().gather(cpu_flat.data_ptr(), cpu.numel(), oc, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_flat));
    const double ref = cpu_flat.to(at::kDouble).norm().item<double>();
    EXPECT_NEAR(g1.norm.item<float>(), ref, 2e-7 * ref);
    EXPECT_NEAR(g1.norm.item<float>(), c.norm.item<float>(), 2e-7 * ref);
    EXPECT_TRUE(at::allclose(g1.tensor_norms.cpu(), c.tensor_norms, 2e-7, 0));
    EXPECT_EQ(g1.found_inf.item<float>(), 0.0f);
    EXPECT_EQ(g1.clip_coef.item<float>(), std::min(1.0f, 0.5f / (g1.norm.item<float>() + 1e-6f)));
    // The same bits on a second call (the block counter was reset by the first).
    fg::GatherOptions og2 = ask_all(g2, segs, kCuda, 0.5);
    og2.scale = og.scale;
    gpu.core().gather(flat.data_ptr(), gpu.numel(), og2, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(g1.norm.cpu(), g2.norm.cpu()));
    EXPECT_TRUE(fgtest::bits_equal(g1.tensor_norms.cpu(), g2.tensor_norms.cpu()));
    EXPECT_TRUE(fgtest::bits_equal(g1.clip_coef.cpu(), g2.clip_coef.cpu()));
  }
}

TEST(CudaStats, FoundInfAndScaledScatterAndDeviceAlpha) {
  SKIP_WITHOUT_CUDA();
  for (at::ScalarType src : {at::kFloat, at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(std::string("source ") + c10::toString(src));
    std::vector<Pair> tensors = sample_tensors(src, 37);  // with NaN and infinities
    fgt::Plan gpu = fgt::Plan::from_tensors(gpus(tensors));
    fgt::Plan cpu = fgt::Plan::from_tensors(cpus(tensors));
    fgt::StatsOptions want;
    want.check_finite = true;
    at::Tensor flat = poisoned_gpu(gpu.numel(), gpu.dtype());
    fgt::GatherStats st = gpu.gather(flat, want);
    EXPECT_EQ(st.found_inf.item<float>(), 1.0f);
    tensors[4].gpu.nan_to_num_(0.0, 0.0, 0.0);
    st = gpu.gather(flat, want);
    EXPECT_EQ(st.found_inf.item<float>(), 0.0f);
    tensors[4].cpu.copy_(tensors[4].gpu.cpu());
    // scatter with a device scale and scatter_add with a device alpha == the CPU path.
    const at::Tensor source = fgtest::random_tensor({gpu.numel()}, src);
    at::Tensor factor = to_gpu(at::full({}, -0.75f), "factor");
    const at::Tensor source_gpu = to_gpu(source, "source flat");
    gpu.scatter(source_gpu, factor);
    cpu.scatter(source, fgt::Factor(-0.75));
    gpu.scatter_add(source_gpu, factor);
    cpu.scatter_add(source, fgt::Factor(-0.75));
    device_sync();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu)) << "tensor " << i;
    }
  }
}

TEST(CudaStats, EmptyPlanAndHundredThousandTensors) {
  SKIP_WITHOUT_CUDA();
  {
    fgt::Plan empty = fgt::Plan::from_tensors({to_gpu(at::empty({0}))});
    fgt::StatsOptions want;
    want.norm = want.tensor_norms = want.check_finite = true;
    want.max_norm = 1.0;
    fgt::GatherStats st = empty.gather(poisoned_gpu(0, at::kFloat), want);
    EXPECT_EQ(st.norm.item<float>(), 0.0f);
    EXPECT_EQ(st.found_inf.item<float>(), 0.0f);
    EXPECT_EQ(st.clip_coef.item<float>(), 1.0f);
    EXPECT_EQ(st.tensor_norms.cpu().item<float>(), 0.0f);
  }
  std::vector<at::Tensor> cpu_tensors;
  for (int i = 0; i < 100000; ++i)
    cpu_tensors.push_back(fgtest::random_tensor({1 + i % 5}, at::kFloat));
  // One guarded GPU storage holds them all, back to back (100'000 canaries would be slow).
  std::vector<at::Tensor> flattened;
  for (const at::Tensor& t : cpu_tensors) flattened.push_back(t.reshape(-1));
  const at::Tensor storage = to_gpu(at::cat(flattened), "the tensors' storage");
  std::vector<at::Tensor> gpu_tensors;
  int64_t at_element = 0;
  for (const at::Tensor& t : cpu_tensors) {
    gpu_tensors.push_back(storage.narrow(0, at_element, t.numel()).view(t.sizes()));
    at_element += t.numel();
  }
  fgt::Plan gpu = fgt::Plan::from_tensors(gpu_tensors);
  fgt::StatsOptions want;
  want.norm = want.tensor_norms = true;
  fgt::GatherStats st = gpu.gather(poisoned_gpu(gpu.numel(), at::kFloat), want);
  at::Tensor ref = at::stack(at::_foreach_norm(cpu_tensors));
  EXPECT_TRUE(at::allclose(st.tensor_norms.cpu(), ref, 1e-6, 0));
  const double total = at::cat(cpu_tensors).to(at::kDouble).norm().item<double>();
  EXPECT_NEAR(st.norm.item<float>(), total, 2e-7 * total);
}

// A gather with statistics and a scatter_add whose alpha is the clip coefficient, captured
// into one graph and replayed with new gradients: two kernel nodes, no host sync.
// PlanOptions::check_pointers: on, the core asks the driver where a device scalar lives and
// refuses host memory; off, it skips the query and a valid pointer gives the same bits.
TEST(CudaStats, CheckPointersRefusesHostScalarsAndOffGivesTheSameBits) {
  SKIP_WITHOUT_CUDA();
  const at::Tensor a = fgtest::random_tensor({1000}, at::kFloat).to(kCuda);
  const at::Tensor b = fgtest::random_tensor({37}, at::kHalf).to(kCuda);
  fg::PlanOptions checked;
  checked.flat_dtype = fg::DType::Float32;
  fg::PlanOptions unchecked = checked;
  unchecked.check_pointers = false;
  const fg::Plan on = fg::Plan::build({cuda_ref(a, "a"), cuda_ref(b, "b")}, checked);
  const fg::Plan off = fg::Plan::build({cuda_ref(a, "a"), cuda_ref(b, "b")}, unchecked);
  at::Tensor flat = poisoned_gpu(on.layout().numel(), at::kFloat);
  float host_norm = -1.0f;
  fg::GatherOptions bad;
  bad.d_norm = &host_norm;
  EXPECT_THROW_MSG(on.gather(flat.data_ptr(), flat.numel(), bad, nullptr), "gather",
                   "the norm output", "cuda:0");
  StatsOut s_on, s_off;
  fg::GatherOptions o_on = ask_all(s_on, 2, kCuda, 1.0);
  fg::GatherOptions o_off = ask_all(s_off, 2, kCuda, 1.0);
  on.gather(flat.data_ptr(), flat.numel(), o_on, nullptr);
  const at::Tensor flat_on = flat.clone();
  flat.fill_(std::nan(""));
  off.gather(flat.data_ptr(), flat.numel(), o_off, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), flat_on.cpu()));
  const double ref = flat_on.to(at::kDouble).norm().item<double>();
  EXPECT_NEAR(s_on.norm.item<float>(), ref, 2e-7 * ref);
  EXPECT_TRUE(fgtest::bits_equal(s_on.norm.cpu(), s_off.norm.cpu()));
  EXPECT_TRUE(fgtest::bits_equal(s_on.tensor_norms.cpu(), s_off.tensor_norms.cpu()));
  EXPECT_TRUE(fgtest::bits_equal(s_on.clip_coef.cpu(), s_off.clip_coef.cpu()));
}

TEST(CudaGraph, GatherWithStatsAndScatterAddReplayed) {
  SKIP_WITHOUT_CUDA();
  std::vector<Pair> grads = finite_tensors(at::kFloat, 41);
  std::vector<Pair> params = finite_tensors(at::kFloat, 43);
  fgt::Plan grad_plan = fgt::Plan::from_tensors(gpus(grads));
  fgt::Plan param_plan = fgt::Plan::from_tensors(gpus(params));
  fgt::Plan cpu_grad_plan = fgt::Plan::from_tensors(cpus(grads));
  fgt::Plan cpu_param_plan = fgt::Plan::from_tensors(cpus(params));
  const int64_t n = grad_plan.numel();
  at::Tensor flat = poisoned_gpu(n, at::kFloat);
  StatsOut out;
  fg::GatherOptions o = ask_all(out, grad_plan.layout().segments().size(), kCuda, 0.25);
  device_sync();
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  grad_plan.core().gather(flat.data_ptr(), n, o, stream);
  param_plan.core().scatter_add(flat.data_ptr(), n, fg::Factor::device(o.d_clip_coef), stream);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  size_t count = 0;
  CUDA_OK(cudaGraphGetNodes(graph, nullptr, &count));
  EXPECT_EQ(count, 2u) << "one kernel per call";
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphDestroy(graph));
  for (int replay = 0; replay < 3; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    for (const Pair& p : grads) {
      if (p.cpu.numel() == 0) continue;
      const at::Tensor v = fgtest::random_tensor(p.cpu.sizes(), at::kFloat) * (replay + 1);
      p.cpu.copy_(v);
      p.gpu.copy_(v.to(kCuda));
    }
    device_sync();
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    fgt::StatsOptions want;
    want.norm = true;
    want.max_norm = 0.25;
    at::Tensor cpu_flat = cpu_grad_plan.empty_flat();
    fgt::GatherStats ref = cpu_grad_plan.gather(cpu_flat, want);
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_flat));
    const float ref_norm = ref.norm.item<float>();
    EXPECT_NEAR(out.norm.item<float>(), ref_norm, 2e-7 * ref_norm);
    // The parameters moved by the GPU's own coefficient: apply that on the CPU too.
    cpu_param_plan.scatter_add(cpu_flat, fgt::Factor(out.clip_coef.cpu()));
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(fgtest::bits_equal(params[i].gpu.cpu(), params[i].cpu)) << "param " << i;
    }
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaStreamDestroy(stream));
}

// One plan used from two streams at once, and work ordered across them with an event.
TEST(CudaStreams, TwoStreams) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(21);
  std::vector<Pair> tensors = sample_tensors(at::kFloat, 21);
  fgt::Plan plan = fgt::Plan::from_tensors(gpus(tensors));
  fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors));
  const int64_t n = plan.numel();
  at::Tensor flat1 = poisoned_gpu(n, at::kFloat), flat2 = poisoned_gpu(n, at::kFloat),
             flat3 = poisoned_gpu(n, at::kFloat);
  device_sync();
  cudaStream_t s1 = nullptr, s2 = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  plan.core().gather(flat1.data_ptr(), n, s1);
  plan.core().gather(flat2.data_ptr(), n, s2);
  CUDA_OK(cudaStreamSynchronize(s1));
  CUDA_OK(cudaStreamSynchronize(s2));
  const at::Tensor want = cpu_plan.gather();
  EXPECT_TRUE(fgtest::bits_equal(flat1.cpu(), want));
  EXPECT_TRUE(fgtest::bits_equal(flat2.cpu(), want));

  // s1 scatters new values; s2 waits for it and gathers them into flat3.
  const at::Tensor source = fgtest::random_tensor({n}, at::kFloat);
  flat1.copy_(source.to(kCuda));
  device_sync();
  cudaEvent_t done = nullptr;
  CUDA_OK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  plan.core().scatter(flat1.data_ptr(), n, s1);
  CUDA_OK(cudaEventRecord(done, s1));
  CUDA_OK(cudaStreamWaitEvent(s2, done, 0));
  plan.core().gather(flat3.data_ptr(), n, s2);
  CUDA_OK(cudaStreamSynchronize(s2));
  cpu_plan.scatter(source);
  EXPECT_TRUE(fgtest::bits_equal(flat3.cpu(), cpu_plan.gather()));
  CUDA_OK(cudaEventDestroy(done));
  CUDA_OK(cudaStreamDestroy(s1));
  CUDA_OK(cudaStreamDestroy(s2));
}

TEST(CudaRebind, NewPointerIsUsedAndCaptureRefuses) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(31);
  at::Tensor a = to_gpu(at::randn({100}), "a"), b = to_gpu(at::randn({33, 3}), "b"),
             c = to_gpu(at::randn({5}), "c");
  at::Tensor b2 = to_gpu(at::randn({33, 3}), "b2");
  fg::Plan core = fg::Plan::build({cuda_ref(a, "a"), cuda_ref(b, "b"), cuda_ref(c, "c")});
  const int64_t n = core.layout().numel();
  at::Tensor flat = poisoned_gpu(n, at::kFloat);
  device_sync();
  const std::size_t segment = core.segment_of(1);
  core.rebind(segment, b2.data_ptr(), nullptr);
  core.gather(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(
      flat.cpu(), fgtest::reference_gather({a.cpu(), b2.cpu(), c.cpu()}, at::kFloat)));
  // scatter writes b2, not b
  const at::Tensor b_before = b.cpu();
  const at::Tensor source = fgtest::random_tensor({n}, at::kFloat);
  flat.copy_(source.to(kCuda));
  device_sync();
  core.scatter(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(b.cpu(), b_before));
  EXPECT_TRUE(fgtest::bits_equal(b2.cpu(), source.narrow(0, 100, 99).reshape({33, 3})));

  // Rebinding during capture is an error, not a stale graph.
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  EXPECT_THROW_MSG(core.rebind(segment, b.data_ptr(), stream), "captur");
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  size_t count = 1;
  CUDA_OK(cudaGraphGetNodes(graph, nullptr, &count));
  EXPECT_EQ(count, 0u) << "the refused rebind left nothing in the graph";
  CUDA_OK(cudaGraphDestroy(graph));
  // ... and the plan still reads b2.
  core.gather(flat.data_ptr(), n, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu().narrow(0, 100, 99), b2.cpu().reshape(-1)));
  CUDA_OK(cudaStreamDestroy(stream));
}

TEST(CudaErrors, MixedDevicesAndDeviceRestore) {
  SKIP_WITHOUT_CUDA();
  std::vector<float> host(4, 1.0f);
  at::Tensor g = to_gpu(at::ones({4}), "dev");
  fg::TensorRef cpu_ref{host.data(), fg::DType::Float32, {4}, {}, fg::Device::cpu(), "host"};
  fg::TensorRef gpu_ref{g.data_ptr(), fg::DType::Float32, {4}, {}, fg::Device::cuda(0), "dev"};
  EXPECT_THROW_MSG(fg::Plan::build({cpu_ref, gpu_ref}), "host", "dev", "cuda:0");
  // A device that does not exist is named in the error.
  fg::TensorRef far = gpu_ref;
  far.device = fg::Device::cuda(fg::cuda_device_count());
  EXPECT_THROW_MSG(fg::Plan::build({far}), "cuda:");
  // The executor restores the caller's current device.
  if (fg::cuda_device_count() < 2) GTEST_SKIP() << "device restore needs two CUDA devices";
  CUDA_OK(cudaSetDevice(1));
  fg::Plan plan = fg::Plan::build({gpu_ref});
  at::Tensor flat = poisoned_gpu(4, at::kFloat);
  plan.gather(flat.data_ptr(), 4, nullptr);
  int current = -1;
  CUDA_OK(cudaGetDevice(&current));
  EXPECT_EQ(current, 1);
  CUDA_OK(cudaSetDevice(0));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_TRUE(at::equal(flat.cpu(), g.cpu()));
}

// ---- issue 15: the executor's hazards ----------------------------------------------------------

namespace {

/// gather, scatter and scatter_add of `values` (casts, strided and misaligned views) through a
/// core plan whose tensors and flat buffer carry canaries, against LibTorch.
void check_guarded_round_trip(at::ScalarType tensor_dtype, at::ScalarType flat_dtype,
                              std::uint64_t seed) {
  at::manual_seed(seed);
  std::vector<at::Tensor> bufs;
  const std::vector<std::vector<int64_t>> shapes = {{7}, {33, 65}, {1000}, {4097}, {2, 3, 5, 7}};
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    bufs.push_back(to_gpu(fgtest::random_tensor(shapes[i], tensor_dtype), "t" + std::to_string(i),
                          static_cast<int64_t>(i % 3)));  // storages misaligned by 0..2 elements
  }
  const std::vector<at::Tensor> views = {bufs[0], bufs[1].t(), bufs[2], bufs[3],
                                         bufs[4].permute({0, 2, 3, 1})};
  std::vector<fg::TensorRef> refs;
  for (std::size_t i = 0; i < views.size(); ++i)
    refs.push_back(cuda_ref(views[i], "t" + std::to_string(i)));
  fg::PlanOptions options;
  options.flat_dtype = fgt::to_dtype(flat_dtype);
  fg::Plan plan = fg::Plan::build(refs, options);
  const int64_t n = plan.layout().numel();
  std::vector<at::Tensor> cpu_views;
  for (const at::Tensor& v : views) cpu_views.push_back(v.cpu());

  const at::Tensor flat = poisoned_gpu(n, flat_dtype, 1);  // misaligned by one element
  plan.gather(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), expected_flat(cpu_views, plan.layout(), flat_dtype)));

  const at::Tensor source = fgtest::random_tensor({n}, flat_dtype);
  flat.copy_(source.to(kCuda));
  for (const at::Tensor& v : views) poison(v);
  plan.scatter(flat.data_ptr(), n, nullptr);
  device_sync();
  for (std::size_t i = 0; i < views.size(); ++i) {
    const fg::Segment& s = plan.layout().segments()[i];
    EXPECT_TRUE(fgtest::bits_equal(
        views[i].cpu(),
        source.narrow(0, s.offset, s.numel).to(tensor_dtype).reshape(views[i].sizes())))
        << "scatter, tensor " << i;
  }
  if (!at::isFloatingType(tensor_dtype)) return;  // scatter_add needs floating tensors
  std::vector<at::Tensor> before;
  for (const at::Tensor& v : views) before.push_back(v.cpu());
  plan.scatter_add(flat.data_ptr(), n, -0.5, nullptr);
  device_sync();
  for (std::size_t i = 0; i < views.size(); ++i) {
    const fg::Segment& s = plan.layout().segments()[i];
    EXPECT_TRUE(fgtest::bits_equal(
        views[i].cpu(),
        fgtest::reference_add_scaled(before[i], source.narrow(0, s.offset, s.numel), -0.5)))
        << "scatter_add, tensor " << i;
  }
}

}  // namespace

// Fix 1: the table has landed when build returns, so a launch on a non-blocking stream right
// after build, with no device synchronization, reads the whole table.
TEST(CudaTable, LaunchOnNonBlockingStreamRightAfterBuild) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(61);
  std::vector<at::Tensor> ts;
  for (int i = 0; i < 2000; ++i) ts.push_back(to_gpu(at::randn({1 + i % 37})));  // a big table
  std::vector<fg::TensorRef> refs;
  for (std::size_t i = 0; i < ts.size(); ++i)
    refs.push_back(cuda_ref(ts[i], "p" + std::to_string(i)));
  device_sync();
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int64_t n = 0;
  for (const at::Tensor& t : ts) n += t.numel();
  // Allocated (and poisoned, synchronously) before any build: nothing orders the launch.
  std::vector<at::Tensor> flats;
  for (int round = 0; round < 5; ++round) flats.push_back(poisoned_gpu(n, at::kFloat));
  for (int round = 0; round < 5; ++round) {
    fg::Plan plan = fg::Plan::build(refs);
    ASSERT_EQ(plan.layout().numel(), n);
    plan.gather(flats[round].data_ptr(), n, stream);  // no sync between build and launch
    std::vector<float> host(static_cast<std::size_t>(n));
    CUDA_OK(cudaMemcpyAsync(host.data(), flats[round].data_ptr(), host.size() * 4,
                            cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    at::Tensor got = at::from_blob(host.data(), {n}, at::kFloat).clone();
    std::vector<at::Tensor> cpu;
    for (const at::Tensor& t : ts) cpu.push_back(t.cpu());
    EXPECT_TRUE(fgtest::bits_equal(got, fgtest::reference_gather(cpu, at::kFloat)))
        << "round " << round;
  }
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaStreamDestroy(stream));
}

// Fix 3: another thread captures in global mode while this one builds, rebinds and destroys
// plans; the capture stays valid, and its graph replays correctly, seeing a rebind made
// between replays (NOTE: [graphs and plan lifetime]).
TEST(CudaGraph, GlobalCaptureWhileAnotherThreadBuildsRebindsDestroys) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(62);
  at::Tensor a = to_gpu(at::randn({1000}), "a"), b = to_gpu(at::randn({17, 3}), "b"),
             b2 = to_gpu(at::randn({17, 3}), "b2");
  fg::Plan plan = fg::Plan::build({cuda_ref(a, "a"), cuda_ref(b, "b")});
  const int64_t n = plan.layout().numel();
  at::Tensor flat = poisoned_gpu(n, at::kFloat);
  at::Tensor x = to_gpu(at::randn({64}), "x"), y = to_gpu(at::randn({64}), "y"),
             z = to_gpu(at::randn({64}), "z");
  device_sync();

  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::atomic<int> phase{0};
  std::string worker_error;
  std::thread worker([&] {
    while (phase.load() == 0) std::this_thread::yield();
    try {
      for (int i = 0; i < 20; ++i) {
        fg::Plan other = fg::Plan::build({cuda_ref(x, "x"), cuda_ref(y, "y")});
        other.rebind(1, z.data_ptr(), nullptr);
      }  // each plan destroyed: cudaFree during the capture
    } catch (const std::exception& e) {
      worker_error = e.what();
    }
    phase.store(2);
  });
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  plan.gather(flat.data_ptr(), n, stream);
  phase.store(1);
  while (phase.load() != 2) std::this_thread::yield();
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  worker.join();
  EXPECT_EQ(worker_error, "") << "build/rebind/destroy failed during another thread's capture";
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(
      fgtest::bits_equal(flat.cpu(), fgtest::reference_gather({a.cpu(), b.cpu()}, at::kFloat)));
  // Rebind between replays: the next replay reads the new memory.
  plan.rebind(1, b2.data_ptr(), stream);
  poison(flat);
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(
      fgtest::bits_equal(flat.cpu(), fgtest::reference_gather({a.cpu(), b2.cpu()}, at::kFloat)));
  // The promise: graphs are destroyed before their plan (the plan outlives them).
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
}

// Fixes via the tuning knob: both cache-hint flavours and tiny tile budgets (cuts inside
// copies) with casts, strided and misaligned tensors, canaries around everything.
TEST(CudaGatherScatter, BothCacheHintFlavoursAndTinyTiles) {
  SKIP_WITHOUT_CUDA();
  std::uint64_t seed = 70;
  for (const char* spec : {"streaming=1", "streaming=-1", "streaming=1,tile=48,copy_cost=5",
                           "streaming=-1,tile=1,copy_cost=0"}) {
    TuningOverride tuning(spec);
    for (const auto& [t, f] :
         {std::pair{at::kBFloat16, at::kFloat}, std::pair{at::kDouble, at::kHalf},
          std::pair{at::kFloat, at::kFloat}}) {
      SCOPED_TRACE(std::string(spec) + " " + c10::toString(t) + " -> " + c10::toString(f));
      check_guarded_round_trip(t, f, seed++);
    }
  }
}

// Issue 19's A/B switches (NOTE: [tile scaling], NOTE: [bytes in flight]), each forced both
// ways: 1- and 2-byte copies (the byte-sized unroll) and casts, aligned (both sides in whole
// packs: the new unroll runs) and misaligned or strided (it must not), plans small enough
// that scaling shrinks the tiles; the plan's description shows the switch reached it.
TEST(CudaGatherScatter, TileScalingAndBytesUnrollVariants) {
  SKIP_WITHOUT_CUDA();
  std::uint64_t seed = 190;
  for (const char* spec :
       {"tile_scaling=old,unroll=old", "tile_scaling=new,unroll=new",
        "tile_scaling=new,min_tile=64,unroll=new,streaming=1", "tile_scaling=old,unroll=new"}) {
    TuningOverride tuning(spec);
    const std::string text(spec);
    for (const auto& [t, f] :
         {std::pair{at::kByte, at::kByte}, std::pair{at::kBool, at::kBool},
          std::pair{at::kBFloat16, at::kBFloat16}, std::pair{at::kHalf, at::kBFloat16},
          std::pair{at::kShort, at::kShort}, std::pair{at::kFloat, at::kFloat}}) {
      SCOPED_TRACE(text + " " + c10::toString(t) + " -> " + c10::toString(f));
      check_guarded_round_trip(t, f, seed++);  // misaligned and strided views, canaries
      // Aligned tensors, 16-byte segments: whole packs on both sides.
      at::manual_seed(seed++);
      std::vector<at::Tensor> tensors;
      for (const int64_t n : {int64_t{100003}, int64_t{4099}, int64_t{77}, int64_t{1} << 20}) {
        tensors.push_back(fgtest::random_tensor({n}, t).to(kCuda));
      }
      std::vector<fg::TensorRef> refs;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        refs.push_back(cuda_ref(tensors[i], "a" + std::to_string(i)));
      }
      fg::PlanOptions options;
      options.flat_dtype = fgt::to_dtype(f);
      options.align_bytes = 16;
      fg::Plan plan = fg::Plan::build(refs, options);
      const std::string described = plan.describe();
      EXPECT_NE(described.find(text.find("unroll=old") != std::string::npos ? "unroll=old"
                                                                            : "unroll=new"),
                std::string::npos)
          << described;
      EXPECT_NE(
          described.find(text.find("tile_scaling=old") != std::string::npos ? "tile_scaling=old"
                                                                            : "tile_scaling=new"),
          std::string::npos)
          << described;
      const int64_t n = plan.layout().numel();
      at::Tensor flat = fgtest::poisoned(n, f).to(kCuda);
      plan.gather(flat.data_ptr(), n, nullptr);
      device_sync();
      std::vector<at::Tensor> cpu_tensors;
      for (const at::Tensor& x : tensors) cpu_tensors.push_back(x.cpu());
      EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), expected_flat(cpu_tensors, plan.layout(), f)));
      const at::Tensor source = fgtest::random_tensor({n}, f);
      flat.copy_(source.to(kCuda));
      for (const at::Tensor& x : tensors) poison(x);
      plan.scatter(flat.data_ptr(), n, nullptr);
      device_sync();
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const fg::Segment& s = plan.layout().segments()[i];
        EXPECT_TRUE(fgtest::bits_equal(tensors[i].cpu(), source.narrow(0, s.offset, s.numel).to(t)))
            << "scatter, tensor " << i;
      }
    }
  }
}

// NOTE: [hardware conversions] (kernels/copy.cuh): with convert=old and convert=new, float32
// tensors (aligned, at an odd offset, transposed) gathered into bfloat16 and float16 flat
// buffers, and a float32 flat buffer scattered into such tensors, give the CPU executor's bits
// exactly (NaN payloads and signs included) over the special values of
// fgtest::float32_conversion_specials and random bit patterns.
TEST(CudaGatherScatter, HardwareConversionsSameBitsAsTheCpu) {
  SKIP_WITHOUT_CUDA();
  std::vector<std::uint32_t> bits = fgtest::float32_conversion_specials();
  std::mt19937_64 rng(1919);
  while (bits.size() < 40000) bits.push_back(static_cast<std::uint32_t>(rng()));
  const auto n = static_cast<int64_t>(bits.size());
  const at::Tensor values = at::from_blob(bits.data(), {n}, at::kInt).clone().view(at::kFloat);
  // Raw bits: bits_equal counts any two NaNs as equal.
  auto same_bits = [](const at::Tensor& a, const at::Tensor& b) {
    return fgtest::bits_equal(a.contiguous().view(at::kShort), b.contiguous().view(at::kShort));
  };
  for (const char* spec :
       {"convert=old", "convert=new", "convert=new,strided=new,misaligned=new,tile=256"}) {
    TuningOverride tuning(spec);
    const std::string text(spec);
    for (const at::ScalarType narrow : {at::kBFloat16, at::kHalf}) {
      SCOPED_TRACE(text + " " + c10::toString(narrow));
      // gather: float32 tensors into a narrow flat buffer
      std::vector<Pair> tensors;
      tensors.push_back(make_pair(values));
      tensors.push_back(make_pair(values, [](const at::Tensor& t) { return t.narrow(0, 1, 999); }));
      tensors.push_back(make_pair(values, [](const at::Tensor& t) {
        return t.narrow(0, 3, 150 * 101).view({150, 101}).t();
      }));
      fgt::Options opt;
      opt.dtype = narrow;
      fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
      fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
      const std::string described = gpu_plan.core().describe();
      EXPECT_NE(described.find(text.substr(0, text.find(','))), std::string::npos) << described;
      at::Tensor flat = poisoned_gpu(gpu_plan.numel(), narrow, 1);
      gpu_plan.core().gather(flat.data_ptr(), flat.numel(), nullptr);
      device_sync();
      EXPECT_TRUE(same_bits(flat.cpu(), cpu_plan.gather()));

      // scatter: a float32 flat buffer of the same values into poisoned narrow tensors
      std::vector<Pair> narrows;
      narrows.push_back(make_pair(at::empty({n}, narrow)));
      narrows.push_back(make_pair(at::empty({1001}, narrow),
                                  [](const at::Tensor& t) { return t.narrow(0, 1, 999); }));
      narrows.push_back(
          make_pair(at::empty({101, 150}, narrow), [](const at::Tensor& t) { return t.t(); }));
      fgt::Options to_float;
      to_float.dtype = at::kFloat;
      fgt::Plan gpu_back = fgt::Plan::from_tensors(gpus(narrows), {}, to_float);
      fgt::Plan cpu_back = fgt::Plan::from_tensors(cpus(narrows), {}, to_float);
      const at::Tensor source =
          values.repeat({gpu_back.numel() / n + 1}).narrow(0, 0, gpu_back.numel());
      for (const Pair& p : narrows) {
        poison(p.gpu);
        poison(p.cpu);
      }
      const at::Tensor source_gpu = to_gpu(source, "source flat", 3);
      gpu_back.core().scatter(source_gpu.data_ptr(), source_gpu.numel(), nullptr);
      device_sync();
      cpu_back.scatter(source);
      for (std::size_t i = 0; i < narrows.size(); ++i) {
        SCOPED_TRACE("tensor " + std::to_string(i));
        EXPECT_TRUE(same_bits(narrows[i].gpu.cpu(), narrows[i].cpu));
      }
    }
  }
}

// The tile walk with descriptors fetched across the lanes (NOTE: [descriptor fetch] in
// kernels/tile_walk.cuh), forced both ways on a plan of 10,000 tiny tensors (empty ones, casts
// from three dtypes, a few transposed), with and without padding, with the default tiles
// (at most 32 copies each) and with tiles of hundreds of copies or cut inside copies: gather,
// scatter and scatter_add give the CPU executor's bits.
TEST(CudaGatherScatter, DescriptorFetchManyTinyTensors) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1900);
  std::mt19937_64 rng(1900);
  const at::ScalarType dtypes[] = {at::kFloat, at::kHalf, at::kBFloat16};
  std::vector<at::Tensor> cpu;
  for (int i = 0; i < 10000; ++i) {
    const at::ScalarType dtype = dtypes[rng() % 3];
    const int64_t n = static_cast<int64_t>(rng() % 8);  // 0: an empty tensor
    cpu.push_back(i % 97 == 0 && n > 1 ? fgtest::random_tensor({3, n}, dtype).t()
                                       : fgtest::random_tensor({n}, dtype));
  }
  std::vector<at::Tensor> gpu;
  for (const at::Tensor& t : cpu) gpu.push_back(t.to(kCuda));  // .to keeps the strides
  auto flat_of = [](const std::vector<at::Tensor>& ts) {       // every element, on the CPU
    std::vector<at::Tensor> parts;
    for (const at::Tensor& t : ts) parts.push_back(t.reshape(-1).to(at::kFloat));
    return at::cat(parts).cpu();
  };
  for (const char* spec : {"descriptors=old", "descriptors=new", "descriptors=new,copy_cost=0",
                           "descriptors=new,tile=48,copy_cost=5", "descriptors=old,copy_cost=0"}) {
    TuningOverride tuning(spec);
    const std::string text(spec);
    for (const std::int64_t align : {0, 64}) {
      SCOPED_TRACE(text + " align " + std::to_string(align));
      fgt::Options opt;
      opt.dtype = at::kFloat;
      opt.align_bytes = align;
      fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpu, {}, opt);
      fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpu, {}, opt);
      ASSERT_EQ(gpu_plan.layout(), cpu_plan.layout());
      const std::string described = gpu_plan.core().describe();
      EXPECT_NE(described.find(text.substr(0, text.find(','))), std::string::npos) << described;
      const int64_t n = gpu_plan.numel();
      at::Tensor flat = poisoned_gpu(n, at::kFloat);
      gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
      device_sync();
      EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather())) << "gather";

      const at::Tensor source = fgtest::random_tensor({n}, at::kFloat);
      const at::Tensor source_gpu = to_gpu(source, "source flat");
      std::vector<at::Tensor> cpu_copy, gpu_copy;  // scatter into poisoned copies of the tensors
      for (std::size_t i = 0; i < cpu.size(); ++i) {
        cpu_copy.push_back(cpu[i].clone());
        gpu_copy.push_back(gpu[i].clone());
        poison(cpu_copy.back());
        poison(gpu_copy.back());
      }
      fgt::Plan gpu_into = fgt::Plan::from_tensors(gpu_copy, {}, opt);
      fgt::Plan cpu_into = fgt::Plan::from_tensors(cpu_copy, {}, opt);
      gpu_into.core().scatter(source_gpu.data_ptr(), n, nullptr);
      device_sync();
      cpu_into.scatter(source);
      EXPECT_TRUE(fgtest::bits_equal(flat_of(gpu_copy), flat_of(cpu_copy))) << "scatter";
      gpu_into.core().scatter_add(source_gpu.data_ptr(), n, -0.37, nullptr);
      device_sync();
      cpu_into.scatter_add(source, -0.37);
      EXPECT_TRUE(fgtest::bits_equal(flat_of(gpu_copy), flat_of(cpu_copy))) << "scatter_add";
    }
  }
}

// Zero-fill placeholders and rebind to null on the GPU: zeros on gather, untouched on scatter.
TEST(CudaRebind, ZeroFillAndRebindToNull) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(63);
  const at::Tensor a = to_gpu(at::randn({100}), "a"), b = to_gpu(at::randn({33}), "b");
  fg::TensorRef placeholder;
  placeholder.dtype = fg::DType::Float32;
  placeholder.sizes = {20};
  placeholder.device = fg::Device::cuda(0);
  placeholder.zero_fill = true;
  placeholder.name = "missing.grad";
  fg::Plan plan = fg::Plan::build({cuda_ref(a, "a"), placeholder, cuda_ref(b, "b")});
  const int64_t n = plan.layout().numel();
  const at::Tensor flat = poisoned_gpu(n, at::kFloat);
  plan.gather(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(
      flat.cpu(), fgtest::reference_gather({a.cpu(), at::zeros({20}), b.cpu()}, at::kFloat)));
  plan.rebind(plan.segment_of(2), nullptr, nullptr);  // b becomes a placeholder
  poison(flat);
  plan.gather(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(
      flat.cpu(),
      fgtest::reference_gather({a.cpu(), at::zeros({20}), at::zeros({33})}, at::kFloat)));
  const at::Tensor b_before = b.cpu();
  plan.scatter(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(b.cpu(), b_before)) << "a null segment must not be written";
}

// scatter_add is deterministic: run twice from the same start, the same bits.
TEST(CudaGatherScatter, ScatterAddTwiceSameBits) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(64);
  at::Tensor p = to_gpu(at::randn({5000}).to(at::kBFloat16), "p"),
             q = to_gpu(at::randn({70, 30}).to(at::kBFloat16), "q").t();
  fg::PlanOptions options;
  options.flat_dtype = fg::DType::Float32;
  fg::Plan plan = fg::Plan::build({cuda_ref(p, "p"), cuda_ref(q, "q")}, options);
  const int64_t n = plan.layout().numel();
  at::Tensor flat = to_gpu(at::randn({n}), "flat");
  const at::Tensor p0 = p.clone(), q0 = q.clone();
  plan.scatter_add(flat.data_ptr(), n, 0.3, nullptr);
  device_sync();
  const at::Tensor p1 = p.cpu(), q1 = q.cpu();
  p.copy_(p0);
  q.copy_(q0);
  plan.scatter_add(flat.data_ptr(), n, 0.3, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(p.cpu(), p1));
  EXPECT_TRUE(fgtest::bits_equal(q.cpu(), q1));
}

// Fix 5: host memory and other devices' memory are refused at build and rebind, naming the
// tensor, before any kernel could fault.
TEST(CudaErrors, HostPointerRefusedAtBuildAndRebind) {
  SKIP_WITHOUT_CUDA();
  std::vector<float> host(64, 1.0f);
  at::Tensor a = to_gpu(at::randn({64}), "a");
  fg::TensorRef bad = cuda_ref(a, "fc.weight");
  bad.data = host.data();
  EXPECT_THROW_MSG(fg::Plan::build({cuda_ref(a, "ok"), bad}), "'fc.weight'", "host memory",
                   "cuda:0");
  fg::Plan plan = fg::Plan::build({cuda_ref(a, "fc.weight")});
  EXPECT_THROW_MSG(plan.rebind(0, host.data(), nullptr), "rebind", "'fc.weight'", "host memory");
  at::Tensor flat = poisoned_gpu(64, at::kFloat);
  plan.gather(flat.data_ptr(), 64, nullptr);  // the refused rebind changed nothing
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), a.cpu()));
}

// Fix 4: an earlier error of someone else is neither blamed on flatgather nor cleared by it.
TEST(CudaErrors, EarlierErrorIsNotBlamedOrCleared) {
  SKIP_WITHOUT_CUDA();
  at::Tensor a = to_gpu(at::randn({64}), "a");
  fg::Plan plan = fg::Plan::build({cuda_ref(a, "a")});
  at::Tensor flat = poisoned_gpu(64, at::kFloat);
  device_sync();
  void* p = nullptr;
  ASSERT_NE(cudaMalloc(&p, std::size_t{1} << 62), cudaSuccess);  // someone's non-sticky error
  EXPECT_NO_THROW(plan.gather(flat.data_ptr(), 64, nullptr));
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation)
      << "the earlier error must stay its owner's";
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), a.cpu()));
}

// Moved here from test_errors (a CPU binary, which must not skip): a plan whose module moved
// to a GPU after it was built refuses to run, naming the tensor and its new device.
TEST(CudaErrors, PlanAfterItsModuleMovedToAGpu) {
  SKIP_WITHOUT_CUDA();
  torch::nn::Linear moved(4, 3);
  fgt::Plan plan = fgt::Plan::from_module(*moved);
  moved->to(kCuda);
  EXPECT_THROW_MSG(plan.gather(), "'weight'", "cuda", "changed since the plan was built");
}

// Adopt mode on a GPU (include/flatgather/adopt.h): the buffers live on the parameters'
// device, training matches the model that was not adopted, `to(kCPU)` is detected and
// re-adopted, and parameters on two devices are refused.
TEST(CudaAdopt, TrainsLikeThePlainModelMovesAndRefusesMixedDevices) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(21);
  torch::nn::Linear plain(7, 5), model(7, 5);
  {
    torch::NoGradGuard no_grad;
    model->weight.copy_(plain->weight);
    model->bias.copy_(plain->bias);
  }
  plain->to(kCuda);
  model->to(kCuda);
  fgt::AdoptOptions options;
  options.grads = true;
  fgt::Adoption adopted = fgt::adopt(*model, {}, options);
  ASSERT_TRUE(adopted.flat().is_cuda());
  ASSERT_TRUE(adopted.grad_flat().is_cuda());
  torch::optim::SGD sgd_plain(plain->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < 3; ++step) {
    const at::Tensor x = at::randn({4, 7}, at::TensorOptions(at::kFloat).device(kCuda));
    for (auto* pair : {&plain, &model}) {
      for (auto& p : (*pair)->parameters())
        if (p.grad().defined()) p.mutable_grad().zero_();
      (*pair)->forward(x).pow(2).sum().backward();
    }
    sgd_plain.step();
    sgd.step();
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(
        adopted.flat().cpu(), fgtest::reference_gather(plain->parameters(), at::kFloat).cpu()));
    EXPECT_TRUE(fgtest::bits_equal(
        adopted.grad_flat().cpu(),
        fgtest::reference_gather({plain->weight.grad(), plain->bias.grad()}, at::kFloat).cpu()));
    EXPECT_TRUE(adopted.check().empty());
  }
  model->to(at::kCPU);
  EXPECT_EQ(adopted.check(), (std::vector<std::string>{"weight", "bias"}));
  adopted.readopt();
  EXPECT_TRUE(adopted.flat().device().is_cpu());
  EXPECT_TRUE(adopted.grad_flat().device().is_cpu());
  EXPECT_TRUE(adopted.check().empty());

  torch::nn::Linear split(3, 2);
  split->bias.set_data(split->bias.to(kCuda));
  EXPECT_THROW_MSG(fgt::adopt(*split), "'bias'", "one flat buffer lives on one device");
}

// Byte plans (NOTE: [byte plans]): tensors of every dtype, contiguous and strided, with odd
// byte lengths (the vectorized path's head and tail) into a uint8 flat buffer and back,
// against the CPU path and a reference built from each tensor's own bytes; typed views.
TEST(CudaBytePlan, EveryDtypeByteForByte) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(61);
  std::vector<Pair> tensors;
  std::int64_t n = 3;
  for (at::ScalarType t : kFloats)
    tensors.push_back(make_pair(fgtest::random_tensor({n += 254}, t)));
  for (at::ScalarType t : kOthers)
    tensors.push_back(make_pair(fgtest::random_tensor({n += 37}, t)));
  tensors.push_back(make_pair(fgtest::random_tensor({33, 17}, at::kDouble),
                              [](const at::Tensor& x) { return x.t(); }));
  tensors.push_back(
      make_pair(fgtest::random_tensor({4, 6, 5, 5}, at::kHalf),
                [](const at::Tensor& x) { return x.contiguous(at::MemoryFormat::ChannelsLast); }));
  tensors.push_back(make_pair(fgtest::random_tensor({301}, at::kLong),
                              [](const at::Tensor& x) { return x.slice(0, 1, 301, 3); }));
  tensors.push_back(make_pair(fgtest::random_tensor({}, at::kLong)));  // num_batches_tracked
  for (std::int64_t align : {0, 16, 256}) {
    SCOPED_TRACE("align " + std::to_string(align));
    fgt::Options opt;
    opt.dtype = at::kByte;
    opt.align_bytes = align;
    fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
    fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
    ASSERT_EQ(gpu_plan.layout(), cpu_plan.layout());
    const std::int64_t bytes = gpu_plan.numel();
    at::Tensor flat = poisoned_gpu(bytes, at::kByte);
    gpu_plan.gather(flat);
    device_sync();
    const at::Tensor reference = fgtest::reference_bytes(cpus(tensors), align);
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), reference));
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather()));
    const std::vector<at::Tensor> views = gpu_plan.views(flat);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(views[i].is_cuda());
      EXPECT_TRUE(fgtest::bits_equal(views[i].cpu(), tensors[i].cpu)) << i;
    }
    for (const Pair& p : tensors) poison(p.gpu);
    device_sync();
    gpu_plan.scatter(to_gpu(reference, "reference flat"));
    device_sync();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu)) << i;
    }
    EXPECT_THROW(gpu_plan.scatter_add(flat, 1.0), fg::Error);
  }
}

// Strided tensors of every element size in a byte plan (NOTE: [byte plan words]): large enough
// for many tiles; into a flat buffer at offset 0 (they move in words of their element size) and
// at odd byte offsets (byte by byte); each against the tensor's own contiguous bytes, and
// scattered back bit for bit.
TEST(CudaBytePlan, StridedTensorsOfEveryElementSize) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(62);
  const auto transposed = [](const at::Tensor& x) { return x.t(); };
  const auto channels_last = [](const at::Tensor& x) {
    return x.contiguous(at::MemoryFormat::ChannelsLast);
  };
  std::vector<Pair> tensors;
  tensors.push_back(make_pair(fgtest::random_tensor({513, 257}, at::kChar), transposed));
  tensors.push_back(make_pair(fgtest::random_tensor({257, 1031}, at::kHalf), transposed));
  tensors.push_back(make_pair(fgtest::random_tensor({96, 64, 3, 3}, at::kFloat), channels_last));
  tensors.push_back(make_pair(fgtest::random_tensor({64, 32, 5, 5}, at::kInt), channels_last));
  tensors.push_back(make_pair(fgtest::random_tensor({301, 517}, at::kLong), transposed));
  tensors.push_back(make_pair(fgtest::random_tensor({800, 300}, at::kDouble),
                              [](const at::Tensor& x) { return x.slice(1, 0, 300, 3); }));
  for (const Pair& p : tensors) ASSERT_FALSE(p.gpu.is_contiguous());
  fgt::Options opt;
  opt.dtype = at::kByte;
  fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
  const at::Tensor reference = fgtest::reference_bytes(cpus(tensors), 0);
  const std::int64_t n = gpu_plan.numel();
  for (std::int64_t shift : {0, 1, 3}) {
    SCOPED_TRACE("flat shift " + std::to_string(shift));
    at::Tensor storage = poisoned_gpu(n + 8, at::kByte);
    at::Tensor flat = storage.narrow(0, shift, n);
    gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), reference));
    for (const Pair& p : tensors) poison(p.gpu);
    device_sync();
    gpu_plan.core().scatter(flat.data_ptr(), n, nullptr);
    device_sync();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu)) << i;
    }
  }
}

// The strided paths (NOTE: [strided copies] in kernels/copy.cuh) on views big enough to span
// many tiles, and both misaligned paths, against LibTorch; with canaries
// (check_guarded_round_trip) for the float pairs. Every spec must reach the plan.
TEST(CudaGatherScatter, EveryStridedAndMisalignedPath) {
  SKIP_WITHOUT_CUDA();
  std::uint64_t seed = 1900;
  for (const char* spec : {"strided=old,misaligned=old", "strided=new,misaligned=new",
                           "strided=new,misaligned=old,streaming=1,tile=48,copy_cost=5",
                           "strided=old,misaligned=new,streaming=-1,tile=1,copy_cost=0"}) {
    TuningOverride tuning(spec);
    for (const auto& [tdt, fdt] :
         {std::pair{at::kFloat, at::kFloat}, std::pair{at::kBFloat16, at::kFloat},
          std::pair{at::kByte, at::kByte}, std::pair{at::kHalf, at::kDouble},
          std::pair{at::kBFloat16, at::kBFloat16}}) {
      SCOPED_TRACE(std::string(spec) + " " + c10::toString(tdt) + " -> " + c10::toString(fdt));
      at::manual_seed(seed);
      const bool tiny_tiles = std::string(spec).find("tile=") != std::string::npos;
      const int64_t scale = tiny_tiles ? 1 : 4;  // tiny tiles: smaller views, same shapes
      std::vector<Pair> tensors;
      tensors.push_back(make_pair(
          fgtest::random_tensor({2 * scale, 24, 30, 30}, tdt),
          [](const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }));
      tensors.push_back(make_pair(fgtest::random_tensor({170 * scale, 333}, tdt),
                                  [](const at::Tensor& t) { return t.t(); }));
      tensors.push_back(make_pair(fgtest::random_tensor({75 * scale, 400}, tdt),
                                  [](const at::Tensor& t) { return t.slice(1, 1, 400, 3); }));
      tensors.push_back(make_pair(fgtest::random_tensor({3, 4, 5, 6, 7}, tdt),
                                  [](const at::Tensor& t) {
        return t.permute({4, 2, 0, 3, 1});
      }));
      tensors.push_back(
          make_pair(fgtest::random_tensor({25000 * scale + 3}, tdt),
                    [=](const at::Tensor& t) { return t.narrow(0, 1, 25000 * scale + 1); }));
      tensors.push_back(make_pair(fgtest::random_tensor({5}, tdt)));  // a bias: no padding
      fgt::Options opt;
      opt.dtype = fdt;
      fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
      const std::string describe = gpu_plan.core().describe();
      for (const char* path : {"strided=", "misaligned="}) {
        const std::size_t at_spec = std::string(spec).find(path);
        const std::string want =
            std::string(spec).substr(at_spec, std::string(spec).find(',', at_spec) - at_spec);
        EXPECT_NE(describe.find(want), std::string::npos) << describe;
      }
      const int64_t n = gpu_plan.numel();
      at::Tensor storage = poisoned_gpu(n + 1, fdt);
      at::Tensor flat = storage.narrow(0, 1, n);  // misaligned against most tensors
      gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
      device_sync();
      EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), fgtest::reference_gather(cpus(tensors), fdt)));

      const at::Tensor source = fgtest::random_tensor({n}, fdt);
      flat.copy_(source.to(kCuda));
      for (const Pair& p : tensors) poison(p.gpu);
      device_sync();
      gpu_plan.core().scatter(flat.data_ptr(), n, nullptr);
      device_sync();
      const auto& segments = gpu_plan.layout().segments();
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const at::Tensor want = source.narrow(0, segments[i].offset, segments[i].numel)
                                    .to(tdt)
                                    .reshape(tensors[i].cpu.sizes());
        EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), want)) << "scatter, tensor " << i;
      }
      if (at::isFloatingType(tdt)) check_guarded_round_trip(tdt, fdt, seed);
      ++seed;
    }
  }
}

// The shared transposes (NOTE: [shared transposes] in kernels/copy.cuh): transposed 2-D views
// and channels_last weights (sizes that are and are not multiples of 32, 3 x 3 and 1 x 7
// kernels, a plan with a contiguous tensor and a sliced one that the path never serves), with
// transpose=new and =old, the default and tiny tile budgets (cuts inside rows and blocks),
// same-dtype and cast plans: gather, scatter and scatter_add give the CPU executor's bits.
// Every spec must reach the plan (describe()).
TEST(CudaGatherScatter, SharedTransposesMatchTheCpuExecutor) {
  SKIP_WITHOUT_CUDA();
  std::uint64_t seed = 2400;
  const auto transposed = [](const at::Tensor& x) { return x.t(); };
  const auto channels_last = [](const at::Tensor& x) {
    return x.contiguous(at::MemoryFormat::ChannelsLast);
  };
  std::vector<std::string> specs = {"transpose=new", "transpose=old", "transpose=new,strided=new",
                                    "transpose=new,strided=new,tile=2048,copy_cost=16,streaming=1",
                                    "transpose=new,tile=300,copy_cost=0,streaming=-1"};
  // compute-sanitizer's racecheck runs each launch far slower: scripts/gpu-check.sh keeps it to
  // the shared-memory paths' first spec (FLATGATHER_TEST_TRANSPOSE_SPECS=transpose=new).
  if (const char* only = std::getenv("FLATGATHER_TEST_TRANSPOSE_SPECS"); only && *only)
    specs = {only};
  for (const std::string& spec : specs) {
    TuningOverride tuning(spec.c_str());
    for (const auto& [tdt, fdt] :
         {std::pair{at::kFloat, at::kFloat}, std::pair{at::kBFloat16, at::kBFloat16},
          std::pair{at::kByte, at::kByte}, std::pair{at::kBFloat16, at::kFloat},
          std::pair{at::kDouble, at::kFloat}}) {
      SCOPED_TRACE(spec + " " + c10::toString(tdt) + " -> " + c10::toString(fdt));
      at::manual_seed(static_cast<std::int64_t>(seed));
      std::vector<Pair> tensors;
      tensors.push_back(make_pair(fgtest::random_tensor({96, 64}, tdt), transposed));
      tensors.push_back(make_pair(fgtest::random_tensor({33, 100}, tdt), transposed));
      tensors.push_back(make_pair(fgtest::random_tensor({64, 35, 3, 3}, tdt), channels_last));
      tensors.push_back(make_pair(fgtest::random_tensor({777}, tdt)));
      tensors.push_back(make_pair(fgtest::random_tensor({40, 64, 1, 7}, tdt), channels_last));
      tensors.push_back(make_pair(fgtest::random_tensor({1000, 37}, tdt), transposed));
      tensors.push_back(make_pair(fgtest::random_tensor({75, 40}, tdt),
                                  [](const at::Tensor& t) { return t.slice(1, 1, 40, 3); }));
      tensors.push_back(make_pair(fgtest::random_tensor({2, 48, 5, 5}, tdt), channels_last));
      fgt::Options opt;
      opt.dtype = fdt;
      fgt::Plan gpu_plan = fgt::Plan::from_tensors(gpus(tensors), {}, opt);
      fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors), {}, opt);
      ASSERT_EQ(gpu_plan.layout(), cpu_plan.layout());
      const std::string describe = gpu_plan.core().describe();
      const std::string want = spec.substr(0, spec.find(','));
      EXPECT_NE(describe.find(want), std::string::npos) << describe;
      const int64_t n = gpu_plan.numel();

      at::Tensor flat = poisoned_gpu(n, fdt);
      gpu_plan.core().gather(flat.data_ptr(), n, nullptr);
      device_sync();
      EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), cpu_plan.gather())) << "gather";

      const at::Tensor source = fgtest::random_tensor({n}, fdt);
      const at::Tensor source_gpu = scatter_both(tensors, gpu_plan, cpu_plan, source);
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu)) << "scatter " << i;
      }

      if (at::isFloatingType(tdt)) {
        const double alpha = 0.625;
        for (const Pair& p : tensors) {
          const at::Tensor v = fgtest::random_tensor(p.cpu.sizes(), tdt);
          p.cpu.copy_(v);
          p.gpu.copy_(v.to(kCuda));
        }
        device_sync();
        gpu_plan.core().scatter_add(source_gpu.data_ptr(), n, alpha, nullptr);
        device_sync();
        cpu_plan.scatter_add(source, alpha);
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          EXPECT_TRUE(fgtest::bits_equal(tensors[i].gpu.cpu(), tensors[i].cpu))
              << "scatter_add " << i;
        }
      }
      ++seed;
    }
  }
}

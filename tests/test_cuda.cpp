// GPU tests of the CUDA executor: every result is compared bit for bit with the CPU path and
// with LibTorch (torch::cat of reshape(-1), .to(dtype)). Each test skips, with the reason,
// where no CUDA device (or no CUDA-enabled LibTorch) is present, or fails where the run
// demands a GPU (FLATGATHER_REQUIRE_GPU=1, tests/test_util.h).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "flatgather/plan.h"
#include "flatgather/torch.h"
#include "test_util.h"
#include "torch_util.h"

namespace fg = flatgather;
namespace fgt = flatgather::torch;

#define SKIP_WITHOUT_CUDA()                                                                     \
  do {                                                                                          \
    if (!fg::cuda_available())                                                                  \
      FG_SKIP_WITHOUT_GPU("no CUDA device: flatgather::cuda_available() is false");             \
    if (!::torch::cuda::is_available())                                                         \
      FG_SKIP_WITHOUT_GPU("no CUDA device for LibTorch (a CPU-only LibTorch cannot make CUDA tensors)"); \
  } while (false)

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

namespace {

const at::Device kCuda(at::kCUDA, 0);

/// The same tensor on the CPU and on the GPU, with the same view applied to both.
struct Pair {
  at::Tensor cpu;
  at::Tensor gpu;
};

Pair make_pair(const at::Tensor& base_cpu, const std::function<at::Tensor(const at::Tensor&)>& view = nullptr) {
  const at::Tensor base_gpu = base_cpu.contiguous().to(kCuda);
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
  p.push_back(make_pair(fgtest::random_tensor({33, 65}, dtype), [](const at::Tensor& t) { return t.t(); }));
  p.push_back(make_pair(fgtest::random_tensor({2, 3, 5, 7}, dtype),
                        [](const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }));
  p.push_back(make_pair(fgtest::random_tensor({10, 12}, dtype), [](const at::Tensor& t) { return t.slice(1, 1, 12, 3); }));
  p.push_back(make_pair(fgtest::random_tensor({4099}, dtype), [](const at::Tensor& t) { return t.narrow(0, 1, 4097); }));
  return p;
}

/// The expected flat buffer: each tensor's reshape(-1).to(dtype) at its segment, zeros between.
at::Tensor expected_flat(const std::vector<at::Tensor>& tensors, const fg::Layout& layout, at::ScalarType dtype) {
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

at::Tensor poisoned_gpu(int64_t n, at::ScalarType dtype) { return fgtest::poisoned(n, dtype).to(kCuda); }

void poison(const at::Tensor& t) { fgtest::poison_(t); }

void device_sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

const at::ScalarType kFloats[] = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};
const at::ScalarType kOthers[] = {at::kChar, at::kByte, at::kShort, at::kInt, at::kLong, at::kBool};

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
      EXPECT_NE(gpu_plan.core().describe().find("cuda:0"), std::string::npos) << gpu_plan.core().describe();

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
      for (const Pair& p : tensors) {
        poison(p.gpu);
        poison(p.cpu);
      }
      device_sync();
      const at::Tensor source_gpu = source.to(kCuda);
      gpu_plan.core().scatter(source_gpu.data_ptr(), n, nullptr);
      device_sync();
      cpu_plan.scatter(source);
      const auto& segments = gpu_plan.layout().segments();
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        SCOPED_TRACE("tensor " + std::to_string(i));
        const at::Tensor back = tensors[i].gpu.cpu();
        EXPECT_TRUE(fgtest::bits_equal(back, tensors[i].cpu));
        const at::Tensor want =
            source.narrow(0, segments[i].offset, segments[i].numel).to(tdt).reshape(tensors[i].cpu.sizes());
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
    tensors.push_back(make_pair(fgtest::random_tensor({6, 7}, t), [](const at::Tensor& x) { return x.t(); }));
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
// unaligned (element-wise) side of the vector split.
TEST(CudaGatherScatter, OddAlignments) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(5);
  for (at::ScalarType tdt : {at::kFloat, at::kBFloat16, at::kByte, at::kDouble}) {
    const at::ScalarType fdt = tdt == at::kBFloat16 ? at::kFloat : tdt;
    for (int64_t flat_shift = 0; flat_shift < 4; ++flat_shift) {
      SCOPED_TRACE(std::string(c10::toString(tdt)) + " flat shift " + std::to_string(flat_shift));
      const at::Tensor base = fgtest::random_tensor({5000}, tdt);
      std::vector<Pair> tensors;
      int64_t at_offset = 1;
      for (int64_t len : {37, 1, 2, 3, 129, 1000, 17, 64, 5}) {
        tensors.push_back(make_pair(base, [=](const at::Tensor& b) { return b.narrow(0, at_offset, len); }));
        at_offset += len + 1 + len % 3;  // gaps keep the views apart at varying alignments
      }
      // The GPU views must share one GPU base, like the CPU views share `base`.
      const at::Tensor base_gpu = base.to(kCuda);
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
      EXPECT_TRUE(fgtest::bits_equal(storage.narrow(0, 0, flat_shift).cpu(), poison_ref.narrow(0, 0, flat_shift)));
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
  const at::Tensor base_gpu = base.to(kCuda);
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
  const at::Tensor source_gpu = source.to(kCuda);
  gpu_plan.core().scatter(source_gpu.data_ptr(), source.numel(), nullptr);
  device_sync();
  cpu_plan.scatter(source);
  EXPECT_TRUE(fgtest::bits_equal(base_gpu.cpu(), base));
}

// A flat buffer over 4 GiB and over 2^31 elements: 64-bit offsets everywhere.
TEST(CudaGatherScatter, FlatOver4GiB) {
  SKIP_WITHOUT_CUDA();
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t need = size_t{24} << 30;
  if (free_bytes < need) GTEST_SKIP() << "needs 24 GiB of free GPU memory, " << (free_bytes >> 20) << " MiB free";
  const auto u8 = at::TensorOptions(at::kByte).device(kCuda);
  {  // uint8: 2^32 + 7 elements, then a small tensor past 2^32
    const int64_t big = (int64_t{1} << 32) + 7;
    at::Tensor a = at::randint(0, 256, {big}, u8);
    at::Tensor b = at::randint(0, 256, {13}, u8);
    fgt::Plan plan = fgt::Plan::from_tensors({a, b});
    const int64_t n = plan.numel();
    at::Tensor flat = at::full({n}, 0xA5, u8);
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
  }
  {  // bfloat16 -> float32: 2^31 + 9 elements, an 8 GiB flat
    const int64_t big = (int64_t{1} << 31) + 9;
    at::Tensor a = at::randn({big}, at::TensorOptions(at::kBFloat16).device(kCuda));
    at::Tensor b = at::randn({5}, at::TensorOptions(at::kBFloat16).device(kCuda));
    fgt::Options opt;
    opt.dtype = at::kFloat;
    fgt::Plan plan = fgt::Plan::from_tensors({b, a}, {}, opt);
    const int64_t n = plan.numel();
    at::Tensor flat = at::full({n}, -7.0, at::TensorOptions(at::kFloat).device(kCuda));
    plan.core().gather(flat.data_ptr(), n, nullptr);
    device_sync();
    EXPECT_TRUE(at::equal(flat.narrow(0, 0, 5), b.to(at::kFloat)));
    EXPECT_TRUE(at::equal(flat.narrow(0, 5, big), a.to(at::kFloat)));  // widening is exact
  }
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
  cudaGraphExec_t scatter_add = capture([&] { plan.core().scatter_add(flat.data_ptr(), n, 0.5, stream); });

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

// One plan used from two streams at once, and work ordered across them with an event.
TEST(CudaStreams, TwoStreams) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(21);
  std::vector<Pair> tensors = sample_tensors(at::kFloat, 21);
  fgt::Plan plan = fgt::Plan::from_tensors(gpus(tensors));
  fgt::Plan cpu_plan = fgt::Plan::from_tensors(cpus(tensors));
  const int64_t n = plan.numel();
  at::Tensor flat1 = poisoned_gpu(n, at::kFloat), flat2 = poisoned_gpu(n, at::kFloat), flat3 = poisoned_gpu(n, at::kFloat);
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
  const auto f32 = at::TensorOptions(at::kFloat).device(kCuda);
  at::Tensor a = at::randn({100}, f32), b = at::randn({33, 3}, f32), c = at::randn({5}, f32);
  at::Tensor b2 = at::randn({33, 3}, f32);
  fg::Plan core = fg::Plan::build({cuda_ref(a, "a"), cuda_ref(b, "b"), cuda_ref(c, "c")});
  const int64_t n = core.layout().numel();
  at::Tensor flat = poisoned_gpu(n, at::kFloat);
  device_sync();
  const std::size_t segment = core.segment_of(1);
  core.rebind(segment, b2.data_ptr(), nullptr);
  core.gather(flat.data_ptr(), n, nullptr);
  device_sync();
  EXPECT_TRUE(fgtest::bits_equal(flat.cpu(), fgtest::reference_gather({a.cpu(), b2.cpu(), c.cpu()}, at::kFloat)));
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
  at::Tensor g = at::ones({4}, at::TensorOptions(at::kFloat).device(kCuda));
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
  at::Tensor flat = at::empty({4}, at::TensorOptions(at::kFloat).device(kCuda));
  plan.gather(flat.data_ptr(), 4, nullptr);
  int current = -1;
  CUDA_OK(cudaGetDevice(&current));
  EXPECT_EQ(current, 1);
  CUDA_OK(cudaSetDevice(0));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_TRUE(at::equal(flat.cpu(), g.cpu()));
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

// Benchmark bodies for flatgather-bench: ours and every peer over the same tensors.
//
// NOTE: [honest timing]
// - Every method of an op moves the same bytes: bytes_moved() counts what the op must read
//   plus write (gather: tensors + flat; scatter: flat + tensors; scatter_add: flat + tensors
//   read + tensors written). A peer that does more work (torch_cat copying a non-contiguous
//   tensor twice) is charged its time, not its bytes.
// - Timing covers only the call: std::chrono::steady_clock around it on the CPU, CUDA events
//   on the method's stream on the GPU (host launch work after the start event is included,
//   since the GPU idles while it happens). Set-up, the reference check and one warm-up call
//   happen before the first timed iteration; Google Benchmark's repetitions give medians.
// - Buffer sets rotate between iterations so that together they span at least
//   kRotateCacheMultiple times the last-level cache (LLC on the CPU, L2 on the GPU): no method
//   reads data the previous iteration left in cache. A suite whose one set is that large
//   already uses one set.
// - Every method's result is compared once, exactly, with LibTorch's reference; a wrong
//   answer is reported with SkipWithError instead of a time.
#include "workload.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include "cuda_peers.h"
#include "flatgather/plan.h"
#include "flatgather/torch.h"

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif
#ifndef TORCH_VERSION
#define TORCH_VERSION "(unknown version)"
#endif

#if __has_include(<ATen/ops/_foreach_copy.h>)
#include <ATen/ops/_foreach_copy.h>
#define FGBENCH_HAVE_FOREACH_COPY 1
#else
#define FGBENCH_HAVE_FOREACH_COPY 0
#endif

namespace fgbench {
namespace {

constexpr double kRotateCacheMultiple = 3.0;
constexpr int kMaxSets = 8;
constexpr double kAlpha = 1.0;
constexpr std::int64_t kRooflineParallelBytes = std::int64_t{1} << 20;
constexpr std::size_t kCheckedMinTensors = 1000;  // flatgather_checked runs on suites this large  // scatter_add: exact in every compute type, so checks are exact

// ---- devices ------------------------------------------------------------------------------

// The last-level cache one core sees: sysfs first (glibc's sysconf sums the L3 of every core
// complex on some AMD parts), then sysconf, then 32 MiB.
std::size_t cpu_llc_bytes() {
  for (const char* index : {"index3", "index2"}) {
    std::ifstream in(std::string("/sys/devices/system/cpu/cpu0/cache/") + index + "/size");
    std::string text;
    if (in >> text && !text.empty()) {
      std::size_t scale = 1;
      if (text.back() == 'K') scale = std::size_t{1} << 10;
      if (text.back() == 'M') scale = std::size_t{1} << 20;
      const std::size_t value = std::strtoull(text.c_str(), nullptr, 10) * scale;
      if (value > 0) return value;
    }
  }
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? static_cast<std::size_t>(bytes) : std::size_t{32} << 20;
}

std::size_t cache_bytes(Dev dev) {
  if (dev == Dev::CPU) return cpu_llc_bytes();
  const std::size_t l2 = cuda::l2_bytes();
  return l2 > 0 ? l2 : std::size_t{60} << 20;
}

at::Device to_device(Dev dev) { return dev == Dev::CPU ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0); }

// ---- the resident suite -----------------------------------------------------------------------

struct BufferSet {
  std::vector<at::Tensor> tensors;
  at::Tensor flat;
};

/// One method prepared over every buffer set.
class Method {
 public:
  virtual ~Method() = default;
  virtual void run(std::size_t set) = 0;
  /// CPU threads it runs on (0 on the GPU).
  virtual int threads() const { return 0; }
  /// Stream to time on (nullptr: the legacy default stream).
  virtual void* stream() const { return nullptr; }
};

struct Workload {
  Dev dev = Dev::CPU;
  std::string suite_name;
  std::vector<std::int64_t> offsets;  // flat offset of each tensor (no padding)
  std::vector<std::string> names;
  std::vector<BufferSet> sets;
  // The method of the benchmark running now (null after a failed check). Only one is kept:
  // benchmarks run one after another, and the 7B suite's roofline buffers alone are 40 GB.
  std::map<std::string, std::unique_ptr<Method>> methods;
};

std::unique_ptr<Workload> g_workload;

at::Tensor make_tensor(const TensorSpec& spec, at::Device device) {
  const at::ScalarType type = flatgather::torch::to_scalar_type(spec.dtype);
  const auto options = at::TensorOptions().dtype(type).device(device);
  at::Tensor t;
  switch (spec.storage) {
    case Storage::Contiguous: t = at::empty(spec.shape, options); break;
    case Storage::ChannelsLast:
      t = at::empty(spec.shape, options.memory_format(at::MemoryFormat::ChannelsLast));
      break;
    case Storage::Transposed: t = at::empty({spec.shape.at(1), spec.shape.at(0)}, options).t(); break;
  }
  if (flatgather::dtype_is_floating(spec.dtype)) {
    t.copy_(at::randn(spec.shape, at::TensorOptions().device(device)));
  } else if (spec.dtype == flatgather::DType::Bool) {
    t.copy_(at::randint(0, 2, spec.shape, at::TensorOptions().device(device)));
  } else {
    t.copy_(at::randint(-100, 100, spec.shape, at::TensorOptions().device(device)));
  }
  return t;
}

int sets_for(const Suite& suite, Dev dev) {
  const double footprint = static_cast<double>(suite.tensor_bytes() + suite.flat_bytes());
  const double want = kRotateCacheMultiple * static_cast<double>(cache_bytes(dev));
  if (footprint <= 0 || footprint >= want) return 1;
  return std::min(kMaxSets, static_cast<int>(std::ceil(want / footprint)));
}

Workload& workload_for(Dev dev, const Suite& suite) {
  if (g_workload && g_workload->dev == dev && g_workload->suite_name == suite.name) {
    return *g_workload;
  }
  g_workload.reset();  // free the previous suite first
  auto w = std::make_unique<Workload>();
  w->dev = dev;
  w->suite_name = suite.name;
  std::int64_t offset = 0;
  for (const TensorSpec& t : suite.tensors) {
    w->offsets.push_back(offset);
    w->names.push_back(t.name);
    offset += t.numel();
  }
  const int nsets = sets_for(suite, dev);
  std::fprintf(stderr, "  building %s on %s: %zu tensors, %s, %d buffer set%s\n",
               suite.name.c_str(), dev_name(dev), suite.tensors.size(),
               format_bytes(suite.tensor_bytes()).c_str(), nsets, nsets > 1 ? "s" : "");
  at::manual_seed(1234);
  const at::Device device = to_device(dev);
  for (int s = 0; s < nsets; ++s) {
    BufferSet set;
    set.tensors.reserve(suite.tensors.size());
    for (const TensorSpec& spec : suite.tensors) set.tensors.push_back(make_tensor(spec, device));
    set.flat = at::empty({suite.numel()}, at::TensorOptions()
                                              .dtype(flatgather::torch::to_scalar_type(suite.flat_dtype))
                                              .device(device));
    // In pieces: one float32 temporary the size of the 7B suite's flat buffer would be 27 GB.
    const std::int64_t piece = std::int64_t{1} << 26;
    for (std::int64_t begin = 0; begin < suite.numel(); begin += piece) {
      const std::int64_t n = std::min(piece, suite.numel() - begin);
      set.flat.narrow(0, begin, n).copy_(at::randn({n}, at::TensorOptions().device(device)));
    }
    w->sets.push_back(std::move(set));
  }
  if (dev == Dev::CUDA) cuda::synchronize();
  g_workload = std::move(w);
  return *g_workload;
}

// Per-tensor views of `flat`, shaped like the tensors (for the per-tensor peers).
std::vector<at::Tensor> flat_views(const Workload& w, const Suite& suite, const at::Tensor& flat) {
  std::vector<at::Tensor> views;
  views.reserve(suite.tensors.size());
  for (std::size_t i = 0; i < suite.tensors.size(); ++i) {
    views.push_back(flat.narrow(0, w.offsets[i], suite.tensors[i].numel()).view(suite.tensors[i].shape));
  }
  return views;
}

// ---- methods ----------------------------------------------------------------------------------

class FlatgatherMethod final : public Method {
 public:
  FlatgatherMethod(Op op, Workload& w, const Suite& suite, bool check_tensors) : op_(op), w_(w) {
    flatgather::torch::Options options;
    options.dtype = flatgather::torch::to_scalar_type(suite.flat_dtype);
    options.check_tensors = check_tensors;
    for (BufferSet& set : w.sets) {
      plans_.push_back(flatgather::torch::Plan::from_tensors(set.tensors, w.names, options));
    }
  }
  void run(std::size_t set) override {
    const at::Tensor& flat = w_.sets[set].flat;
    switch (op_) {
      case Op::Gather: plans_[set].gather(flat); break;
      case Op::Scatter: plans_[set].scatter(flat); break;
      case Op::ScatterAdd: plans_[set].scatter_add(flat, kAlpha); break;
    }
  }
  int threads() const override { return w_.dev == Dev::CPU ? omp_get_max_threads() : 0; }

 private:
  Op op_;
  Workload& w_;
  std::vector<flatgather::torch::Plan> plans_;
};

// torch::cat of reshape(-1) into the existing flat buffer (parameters_to_vector's technique,
// without its allocation). reshape copies non-contiguous tensors: that is the peer's cost.
class TorchCatMethod final : public Method {
 public:
  explicit TorchCatMethod(Workload& w) : w_(w) {}
  void run(std::size_t set) override {
    const BufferSet& s = w_.sets[set];
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(s.tensors.size());
    for (const at::Tensor& t : s.tensors) flat_parts.push_back(t.reshape(-1));
    at::Tensor out = s.flat;
    at::cat_out(out, flat_parts, 0);
  }
  int threads() const override { return w_.dev == Dev::CPU ? at::get_num_threads() : 0; }

 private:
  Workload& w_;
};

// Base of the peers that work on per-tensor views of the flat buffer, prepared untimed.
class ViewsMethod : public Method {
 public:
  ViewsMethod(Op op, Workload& w, const Suite& suite) : op_(op), w_(w) {
    for (BufferSet& set : w.sets) views_.push_back(flat_views(w, suite, set.flat));
  }

 protected:
  Op op_;
  Workload& w_;
  std::vector<std::vector<at::Tensor>> views_;
};

// One copy_ (or add_) per tensor between it and its view of the flat buffer.
class CopyLoopMethod final : public ViewsMethod {
 public:
  using ViewsMethod::ViewsMethod;
  void run(std::size_t set) override {
    std::vector<at::Tensor>& tensors = w_.sets[set].tensors;
    const std::vector<at::Tensor>& views = views_[set];
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      switch (op_) {
        case Op::Gather: views[i].copy_(tensors[i]); break;
        case Op::Scatter: tensors[i].copy_(views[i]); break;
        case Op::ScatterAdd: tensors[i].add_(views[i], kAlpha); break;
      }
    }
  }
  int threads() const override { return w_.dev == Dev::CPU ? at::get_num_threads() : 0; }
};

// The foreach family (multi_tensor_apply): _foreach_copy_ for gather/scatter, _foreach_add_
// for scatter_add.
class ForeachMethod final : public ViewsMethod {
 public:
  using ViewsMethod::ViewsMethod;
  void run(std::size_t set) override {
    std::vector<at::Tensor>& tensors = w_.sets[set].tensors;
    switch (op_) {
#if FGBENCH_HAVE_FOREACH_COPY
      case Op::Gather: at::_foreach_copy_(views_[set], tensors); break;
      case Op::Scatter: at::_foreach_copy_(tensors, views_[set]); break;
#else
      case Op::Gather:
      case Op::Scatter: throw std::runtime_error("_foreach_copy_ is not in this LibTorch");
#endif
      case Op::ScatterAdd: at::_foreach_add_(tensors, views_[set], kAlpha); break;
    }
  }
};

// split_with_sizes_copy.out: the flat buffer split into the tensors' own (flattened) storage.
class SplitWithSizesCopyMethod final : public Method {
 public:
  SplitWithSizesCopyMethod(Workload& w, const Suite& suite) : w_(w) {
    for (const TensorSpec& t : suite.tensors) sizes_.push_back(t.numel());
    for (BufferSet& set : w.sets) {
      std::vector<at::Tensor> outs;
      for (const at::Tensor& t : set.tensors) outs.push_back(t.view(-1));
      outs_.push_back(std::move(outs));
    }
  }
  void run(std::size_t set) override {
    at::split_with_sizes_copy_out(outs_[set], w_.sets[set].flat, sizes_, 0);
  }

 private:
  Workload& w_;
  std::vector<std::int64_t> sizes_;
  std::vector<std::vector<at::Tensor>> outs_;
};

// cub::DeviceMemcpy::Batched or cudaMemcpyBatchAsync: one byte copy per tensor.
class BatchedCopyMethod final : public Method {
 public:
  BatchedCopyMethod(Op op, Workload& w, const Suite& suite, bool cub) {
    for (BufferSet& set : w.sets) {
      std::vector<const void*> srcs;
      std::vector<void*> dsts;
      std::vector<std::size_t> sizes;
      auto* flat = static_cast<char*>(set.flat.data_ptr());
      const int elem = flatgather::dtype_size(suite.flat_dtype);
      for (std::size_t i = 0; i < set.tensors.size(); ++i) {
        void* tensor = set.tensors[i].data_ptr();
        void* segment = flat + w.offsets[i] * elem;
        srcs.push_back(op == Op::Gather ? tensor : segment);
        dsts.push_back(op == Op::Gather ? segment : tensor);
        sizes.push_back(static_cast<std::size_t>(suite.tensors[i].nbytes()));
      }
      copies_.push_back(cub ? cuda::make_cub_batched(srcs, dsts, sizes)
                            : cuda::make_memcpy_batch(srcs, dsts, sizes));
      if (!copies_.back()) throw std::runtime_error("peer not available in this build");
    }
  }
  void run(std::size_t set) override { copies_[set]->run(); }
  void* stream() const override { return copies_.front()->stream(); }

 private:
  std::vector<std::unique_ptr<cuda::BatchedCopy>> copies_;
};

// One plain copy of half the bytes the op moves (so read + written are equal): memcpy split
// over the same number of OpenMP threads flatgather uses, or cudaMemcpyAsync device to device.
class RooflineMethod final : public Method {
 public:
  RooflineMethod(Op op, Workload& w, const Suite& suite) : w_(w) {
    bytes_ = bytes_moved(op, suite) / 2;
    const auto options = at::TensorOptions().dtype(at::kByte).device(to_device(w.dev));
    while (buffers_.size() < w.sets.size()) {
      // Both filled now, so no page is first touched inside the timed region.
      at::Tensor src = at::empty({bytes_}, options);
      at::Tensor dst = at::empty({bytes_}, options);
      src.fill_(0x5A);
      dst.fill_(0);
      buffers_.emplace_back(src, dst);
    }
  }
  void run(std::size_t set) override {
    const auto& [src, dst] = buffers_[set];
    if (w_.dev == Dev::CUDA) {
      cuda::memcpy_d2d(dst.data_ptr(), src.data_ptr(), static_cast<std::size_t>(bytes_));
      return;
    }
    const auto* s = static_cast<const char*>(src.data_ptr());
    auto* d = static_cast<char*>(dst.data_ptr());
    const std::int64_t bytes = bytes_;
    if (bytes < kRooflineParallelBytes) {  // waking threads would cost more than the copy
      std::memcpy(d, s, static_cast<std::size_t>(bytes));
      return;
    }
#pragma omp parallel
    {
      const std::int64_t n = omp_get_num_threads(), t = omp_get_thread_num();
      const std::int64_t chunk = ((bytes + n - 1) / n + 63) / 64 * 64;
      const std::int64_t begin = std::min(bytes, t * chunk);
      const std::int64_t end = std::min(bytes, begin + chunk);
      if (end > begin) std::memcpy(d + begin, s + begin, static_cast<std::size_t>(end - begin));
    }
  }
  int threads() const override { return w_.dev == Dev::CPU ? omp_get_max_threads() : 0; }
  const std::pair<at::Tensor, at::Tensor>& buffers(std::size_t set) const { return buffers_[set]; }

 private:
  Workload& w_;
  std::int64_t bytes_ = 0;
  std::vector<std::pair<at::Tensor, at::Tensor>> buffers_;
};

std::unique_ptr<Method> make_method(const std::string& name, Op op, Workload& w, const Suite& suite) {
  if (name == "flatgather") return std::make_unique<FlatgatherMethod>(op, w, suite, false);
  if (name == "flatgather_checked") return std::make_unique<FlatgatherMethod>(op, w, suite, true);
  if (name == "torch_cat") return std::make_unique<TorchCatMethod>(w);
  if (name == "copy_loop") return std::make_unique<CopyLoopMethod>(op, w, suite);
  if (name == "foreach_copy" || name == "foreach_add") return std::make_unique<ForeachMethod>(op, w, suite);
  if (name == "split_with_sizes_copy") return std::make_unique<SplitWithSizesCopyMethod>(w, suite);
  if (name == "cub_batched") return std::make_unique<BatchedCopyMethod>(op, w, suite, true);
  if (name == "memcpy_batch") return std::make_unique<BatchedCopyMethod>(op, w, suite, false);
  if (name == "roofline") return std::make_unique<RooflineMethod>(op, w, suite);
  throw std::runtime_error("unknown method " + name);
}

// ---- the reference check ----------------------------------------------------------------------

void poison(at::Tensor t) {
  if (at::isFloatingType(t.scalar_type())) {
    t.fill_(std::nan(""));
  } else if (t.scalar_type() == at::kBool) {
    t.fill_(true);
  } else {
    t.fill_(-123);
  }
}

void sync(Dev dev) {
  if (dev == Dev::CUDA) cuda::synchronize();
}

std::string describe_mismatch(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  std::ostringstream os;
  os << "wrong result: " << what << " differs from LibTorch's reference";
  if (got.sizes() == want.sizes() && at::isFloatingType(want.scalar_type())) {
    const at::Tensor diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs();
    os << " (max |diff| " << diff.nan_to_num(INFINITY).max().item<double>() << ", "
       << (got.isnan().sum().item<std::int64_t>()) << " NaN left by the poisoned fill)";
  }
  return os.str();
}

// Runs `m` once on set 0 and compares with LibTorch. Returns "" or what went wrong.
std::string check(Method& m, const std::string& method, Op op, Workload& w, const Suite& suite) {
  BufferSet& s = w.sets[0];
  const at::ScalarType flat_type = s.flat.scalar_type();
  if (method == "roofline") {
    const auto& [src, dst] = static_cast<RooflineMethod&>(m).buffers(0);
    poison(dst);
    m.run(0);
    sync(w.dev);
    return at::equal(src, dst) ? "" : "wrong result: the roofline copy differs from its source";
  }
  if (op == Op::Gather) {
    std::vector<at::Tensor> parts;
    for (const at::Tensor& t : s.tensors) parts.push_back(t.reshape(-1).to(flat_type));
    const at::Tensor want = at::cat(parts, 0);
    poison(s.flat);
    m.run(0);
    sync(w.dev);
    return at::equal(s.flat, want) ? "" : describe_mismatch(s.flat, want, "the flat buffer");
  }
  const std::vector<at::Tensor> views = flat_views(w, suite, s.flat);
  std::vector<at::Tensor> before;
  if (op == Op::ScatterAdd) {
    for (const at::Tensor& t : s.tensors) before.push_back(t.clone());
  } else {
    for (at::Tensor& t : s.tensors) poison(t);
  }
  m.run(0);
  sync(w.dev);
  for (std::size_t i = 0; i < s.tensors.size(); ++i) {
    const at::Tensor& t = s.tensors[i];
    at::Tensor want;
    if (op == Op::Scatter) {
      want = views[i].to(t.scalar_type());
    } else {
      const bool wide = t.scalar_type() == at::kDouble || flat_type == at::kDouble;
      const at::ScalarType compute = wide ? at::kDouble : at::kFloat;
      want = (before[i].to(compute) + views[i].to(compute) * kAlpha).to(t.scalar_type());
    }
    if (!at::equal(t, want)) return describe_mismatch(t, want, "tensor '" + suite.tensors[i].name + "'");
  }
  return "";
}

double elapsed_seconds() {
  static const auto start = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool has_foreach_copy() { return FGBENCH_HAVE_FOREACH_COPY != 0; }

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::Gather: return "gather";
    case Op::Scatter: return "scatter";
    case Op::ScatterAdd: return "scatter_add";
  }
  return "?";
}

const char* dev_name(Dev dev) { return dev == Dev::CPU ? "cpu" : "cuda"; }

std::int64_t bytes_moved(Op op, const Suite& suite) {
  const std::int64_t tensors = suite.tensor_bytes(), flat = suite.flat_bytes();
  return op == Op::ScatterAdd ? flat + 2 * tensors : flat + tensors;
}

std::vector<std::string> methods_for(Op op, Dev dev, const Suite& suite,
                                     std::vector<Unavailable>* unavailable) {
  if (op == Op::ScatterAdd && !suite.floating()) {
    if (unavailable) unavailable->push_back({"every method", "scatter_add needs floating tensors"});
    return {};
  }
  // check_tensors costs O(tensors) host time per call: it shows only where tensors are many.
  std::vector<std::string> m = {"flatgather"};
  if (suite.tensors.size() >= kCheckedMinTensors) m.push_back("flatgather_checked");
  auto skip = [&](const std::string& name, const std::string& reason) {
    if (unavailable) unavailable->push_back({name, reason});
  };
  if (op == Op::Gather) m.push_back("torch_cat");
  m.push_back("copy_loop");
  // FGBENCH_GPU_PEERS_ON_CPU=1 also runs the LibTorch GPU peers on the CPU: slow there, but it
  // checks their set-up and results on a machine without a GPU.
  const bool gpu_peers = dev == Dev::CUDA || std::getenv("FGBENCH_GPU_PEERS_ON_CPU") != nullptr;
  if (gpu_peers) {
    const std::string bytes_only = "byte copies cannot cast or follow strides";
    if (op == Op::ScatterAdd) {
      m.push_back("foreach_add");
    } else if (has_foreach_copy()) {
      m.push_back("foreach_copy");
    } else {
      skip("foreach_copy", "at::_foreach_copy_ is not in LibTorch " TORCH_VERSION);
    }
    if (op == Op::Scatter) {
      if (suite.plain()) {
        m.push_back("split_with_sizes_copy");
      } else {
        skip("split_with_sizes_copy", "one dtype, contiguous tensors only");
      }
    }
    if (op != Op::ScatterAdd && dev == Dev::CUDA) {
      for (const char* peer : {"cub_batched", "memcpy_batch"}) {
        const std::string why = std::string(peer) == "cub_batched" ? cuda::cub_batched_unavailable()
                                                                    : cuda::memcpy_batch_unavailable();
        if (!why.empty()) {
          skip(peer, why);
        } else if (!suite.plain()) {
          skip(peer, bytes_only);
        } else {
          m.push_back(peer);
        }
      }
    }
  }
  m.push_back("roofline");
  return m;
}

std::string cuda_unavailable_reason() {
  if (!cuda::compiled()) return "flatgather-bench was built without CUDA";
  if (!at::hasCUDA()) return "this LibTorch has no CUDA support or sees no device";
  if (!flatgather::cuda_available()) return "flatgather sees no usable CUDA device";
  return "";
}

std::string device_description(Dev dev) {
  if (dev == Dev::CUDA) return cuda::device_name();
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

void release_workload() { g_workload.reset(); }

void run_benchmark(benchmark::State& state, Op op, Dev dev, const Suite& suite,
                   const std::string& method, const std::string& progress) {
  const at::NoGradGuard no_grad;
  const std::string key = std::string(op_name(op)) + "/" + method;
  Method* m = nullptr;
  try {
    Workload& w = workload_for(dev, suite);
    auto found = w.methods.find(key);
    if (found == w.methods.end()) {
      w.methods.clear();  // free the previous benchmark's plans and buffers first
      std::fprintf(stderr, "%s  (%.0f s)\n", progress.c_str(), elapsed_seconds());
      std::unique_ptr<Method> fresh = make_method(method, op, w, suite);
      // The check doubles as the warm-up call.
      const std::string wrong = check(*fresh, method, op, w, suite);
      if (!wrong.empty()) {
        w.methods.emplace(key, nullptr);
        state.SkipWithError(wrong.c_str());
        return;
      }
      found = w.methods.emplace(key, std::move(fresh)).first;
    }
    m = found->second.get();
    if (!m) {
      state.SkipWithError("wrong result (see the first repetition)");
      return;
    }
  } catch (const std::exception& e) {
    // The suite stays (rebuilding the 7B one costs seconds); the method's memory goes.
    if (g_workload) g_workload->methods.clear();
    state.SkipWithError(e.what());
    return;
  }

  const std::size_t nsets = g_workload->sets.size();
  std::size_t set = 0;
  double seconds = 0;
  std::unique_ptr<cuda::Timer> timer;
  if (dev == Dev::CUDA) timer = std::make_unique<cuda::Timer>(m->stream());
  try {
    for (auto _ : state) {
      set = (set + 1) % nsets;
      if (timer) {
        timer->start();
        m->run(set);
        seconds += timer->stop();
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        m->run(set);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const double iterations = static_cast<double>(state.iterations());
  const double bytes = static_cast<double>(bytes_moved(op, suite));
  if (iterations > 0 && seconds > 0) {
    state.counters["bytes_per_second"] = benchmark::Counter(bytes * iterations / seconds);
    state.counters["time_us"] = benchmark::Counter(seconds / iterations * 1e6);
  }
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["tensors"] = benchmark::Counter(static_cast<double>(suite.tensors.size()));
  state.counters["buffer_sets"] = benchmark::Counter(static_cast<double>(nsets));
  if (dev == Dev::CPU) state.counters["cpu_threads"] = benchmark::Counter(m->threads());
}

}  // namespace fgbench

// Ours and every peer of flatgather-bench, and the method table (see methods.h).
#include "methods.h"

#include <omp.h>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "check.h"
#include "cuda_peers.h"
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

constexpr std::int64_t kRooflineParallelBytes = std::int64_t{1} << 20;
// flatgather_checked runs on suites this large: check_tensors costs O(tensors) host time per
// call, which shows only where tensors are many.
constexpr std::size_t kCheckedMinTensors = 1000;

// ---- the methods ------------------------------------------------------------------------------

// Unscale's device scalar 1 / loss_scale (kUnscaleFactor), as GradScaler keeps it.
at::Tensor unscale_factor(Dev dev) {
  return at::full({}, kUnscaleFactor, at::TensorOptions().dtype(at::kFloat).device(to_device(dev)));
}

// torch::cat of reshape(-1) into the existing flat buffer (parameters_to_vector's technique,
// without its allocation); in a byte plan each part is viewed as bytes, .view(uint8).
// reshape copies non-contiguous tensors: that is the peer's cost.
void cat_into(const Workload& w, const Suite& suite, const BufferSet& s) {
  at::Tensor out = s.flat;
  at::cat_out(out, cat_parts(w, suite, s.tensors), 0);
}

// clip_grad_norm_'s coefficient from its total norm, as it computes it.
at::Tensor clip_coefficient(const at::Tensor& norm) {
  return (kMaxNorm / (norm + 1e-6)).clamp_max(1.0);
}

// The tensors grouped by dtype, as clip_grad_norm_ and GradScaler group them (untimed here)
// so that every group takes the foreach fast path where there is one.
std::vector<std::vector<at::Tensor>> by_dtype(const std::vector<at::Tensor>& tensors) {
  std::map<at::ScalarType, std::vector<at::Tensor>> groups;
  for (const at::Tensor& t : tensors) groups[t.scalar_type()].push_back(t);
  std::vector<std::vector<at::Tensor>> out;
  for (auto& [type, group] : groups) out.push_back(std::move(group));
  return out;
}

// Sets FLATGATHER_CUDA_TUNING for a scope (NOTE: [tuning overrides] in kernels/tuning.h):
// `spec` after whatever the user set, so that it wins; restored after.
class ScopedCudaTuning {
 public:
  explicit ScopedCudaTuning(const std::string& spec) : active_(!spec.empty()) {
    if (!active_) return;
    const char* previous = std::getenv(kVariable);
    had_previous_ = previous != nullptr;
    if (had_previous_) previous_ = previous;
    const std::string value = had_previous_ ? previous_ + "," + spec : spec;
    setenv(kVariable, value.c_str(), 1);
  }
  ~ScopedCudaTuning() {
    if (!active_) return;
    if (had_previous_) {
      setenv(kVariable, previous_.c_str(), 1);
    } else {
      unsetenv(kVariable);
    }
  }
  ScopedCudaTuning(const ScopedCudaTuning&) = delete;
  ScopedCudaTuning& operator=(const ScopedCudaTuning&) = delete;

 private:
  static constexpr const char* kVariable = "FLATGATHER_CUDA_TUNING";
  bool active_;
  bool had_previous_ = false;
  std::string previous_;
};

// `options`: the knobs of a variant (check_tensors, cpu_streaming, cpu_tuning), the flat dtype
// being the suite's; `cuda_tuning`: FLATGATHER_CUDA_TUNING keys the plans are built with.
class FlatgatherMethod final : public Method {
 public:
  FlatgatherMethod(BenchOp op, Workload& w, const Suite& suite, flatgather::torch::Options options,
                   const std::string& cuda_tuning = "")
      : op_(op), w_(w) {
    options.dtype = flatgather::torch::to_scalar_type(suite.flat_dtype);
    const ScopedCudaTuning tuning(cuda_tuning);  // read when a CUDA plan is built
    for (BufferSet& set : w.sets) {
      plans_.push_back(flatgather::torch::Plan::from_tensors(set.tensors, w.names, options));
    }
    if (op == BenchOp::GatherNorm) {
      stats_options_.norm = true;
      stats_options_.max_norm = kMaxNorm;
    } else if (op == BenchOp::Unscale) {
      stats_options_.scale = unscale_factor(w.dev);
      stats_options_.check_finite = true;
    }
  }
  void run(std::size_t set) override {
    const at::Tensor& flat = w_.sets[set].flat;
    switch (op_) {
      case BenchOp::Gather: plans_[set].gather(flat); break;
      case BenchOp::Scatter: plans_[set].scatter(flat); break;
      case BenchOp::ScatterAdd: plans_[set].scatter_add(flat, kAlpha); break;
      case BenchOp::GatherNorm:
      case BenchOp::Unscale: stats_ = plans_[set].gather(flat, stats_options_); break;
    }
  }
  int threads() const override { return w_.dev == Dev::CPU ? omp_get_max_threads() : 0; }
  StatsResult stats() const override {
    return {stats_.norm, stats_.clip_coef, stats_.found_inf, kOursNormTolerance};
  }

 private:
  BenchOp op_;
  Workload& w_;
  std::vector<flatgather::torch::Plan> plans_;
  flatgather::torch::StatsOptions stats_options_;
  flatgather::torch::GatherStats stats_;
};

// at::cat_out of reshape(-1) into the flat buffer (cat_into); for gather_norm followed by
// at::linalg_vector_norm of the flat buffer and the clip coefficient.
class TorchCatMethod final : public Method {
 public:
  TorchCatMethod(BenchOp op, Workload& w, const Suite& suite)
      : op_(op), w_(w), suite_(suite), tolerance_(peer_norm_tolerance(suite)) {}
  void run(std::size_t set) override {
    const BufferSet& s = w_.sets[set];
    cat_into(w_, suite_, s);
    if (op_ == BenchOp::GatherNorm) {
      norm_ = at::linalg_vector_norm(s.flat, 2);
      clip_coef_ = clip_coefficient(norm_);
    }
  }
  int threads() const override { return w_.dev == Dev::CPU ? at::get_num_threads() : 0; }
  StatsResult stats() const override { return {norm_, clip_coef_, {}, tolerance_}; }

 private:
  BenchOp op_;
  Workload& w_;
  const Suite& suite_;
  at::Tensor norm_, clip_coef_;
  double tolerance_;
};

// Base of the peers that work on per-tensor views of the flat buffer, prepared untimed.
class ViewsMethod : public Method {
 public:
  ViewsMethod(BenchOp op, Workload& w, const Suite& suite) : op_(op), w_(w) {
    for (BufferSet& set : w.sets) views_.push_back(flat_views(w, suite, set.flat));
  }

 protected:
  BenchOp op_;
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
        case BenchOp::Gather: views[i].copy_(tensors[i]); break;
        case BenchOp::Scatter: tensors[i].copy_(views[i]); break;
        case BenchOp::ScatterAdd: tensors[i].add_(views[i], kAlpha); break;
        default: throw std::logic_error("copy_loop runs the copy ops only");
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
      case BenchOp::Gather: at::_foreach_copy_(views_[set], tensors); break;
      case BenchOp::Scatter: at::_foreach_copy_(tensors, views_[set]); break;
#else
      case BenchOp::Gather:
      case BenchOp::Scatter: throw std::runtime_error("_foreach_copy_ is not in this LibTorch");
#endif
      case BenchOp::ScatterAdd: at::_foreach_add_(tensors, views_[set], kAlpha); break;
      default: throw std::logic_error("foreach_copy runs the copy ops only");
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

// clip_grad_norm_'s _foreach_norm path (per dtype group: at::_foreach_norm, then at::stack
// of every norm and at::linalg_vector_norm of the stack, then the clip coefficient), and the
// flat buffer by cat_into: the same results as ours. On the CPU _foreach_norm falls back to
// one norm per tensor, which is also clip_grad_norm_(foreach=False).
class ForeachNormMethod final : public Method {
 public:
  ForeachNormMethod(Workload& w, const Suite& suite)
      : w_(w), suite_(suite), tolerance_(peer_norm_tolerance(suite)) {
    for (const BufferSet& set : w.sets) groups_.push_back(by_dtype(set.tensors));
  }
  void run(std::size_t set) override {
    std::vector<at::Tensor> norms;
    for (const std::vector<at::Tensor>& group : groups_[set]) {
      for (at::Tensor& n : at::_foreach_norm(group, 2)) norms.push_back(std::move(n));
    }
    norm_ = at::linalg_vector_norm(at::stack(norms), 2);
    clip_coef_ = clip_coefficient(norm_);
    const BufferSet& s = w_.sets[set];
    cat_into(w_, suite_, s);
  }
  int threads() const override { return w_.dev == Dev::CPU ? at::get_num_threads() : 0; }
  StatsResult stats() const override { return {norm_, clip_coef_, {}, tolerance_}; }

 private:
  Workload& w_;
  const Suite& suite_;
  double tolerance_;
  std::vector<std::vector<std::vector<at::Tensor>>> groups_;
  at::Tensor norm_, clip_coef_;
};

// GradScaler's unscale: found_inf zeroed, at::_amp_foreach_non_finite_check_and_unscale_ per
// dtype group (in place, by the device scalar kUnscaleFactor), then cat_into for the flat
// buffer.
class AmpUnscaleMethod final : public Method {
 public:
  AmpUnscaleMethod(Workload& w, const Suite& suite) : w_(w), suite_(suite) {
    inv_scale_ = unscale_factor(w.dev);
    found_inf_ = at::zeros({}, inv_scale_.options());
    for (const BufferSet& set : w.sets) groups_.push_back(by_dtype(set.tensors));
  }
  void run(std::size_t set) override {
    found_inf_.zero_();
    for (std::vector<at::Tensor>& group : groups_[set]) {
      at::_amp_foreach_non_finite_check_and_unscale_(group, found_inf_, inv_scale_);
    }
    const BufferSet& s = w_.sets[set];
    cat_into(w_, suite_, s);
  }
  StatsResult stats() const override { return {{}, {}, found_inf_, 0}; }

 private:
  Workload& w_;
  const Suite& suite_;
  at::Tensor inv_scale_, found_inf_;
  std::vector<std::vector<std::vector<at::Tensor>>> groups_;
};

// Whether this LibTorch has a CPU kernel for the unscale peer (1.13 has none).
bool amp_unscale_on_cpu() {
  static const bool has = [] {
    try {
      std::vector<at::Tensor> one = {at::ones({1})};
      at::Tensor found_inf = at::zeros({});
      at::_amp_foreach_non_finite_check_and_unscale_(one, found_inf, at::ones({}));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return has;
}

// cub::DeviceMemcpy::Batched or cudaMemcpyBatchAsync: one byte copy per tensor.
class BatchedCopyMethod final : public Method {
 public:
  BatchedCopyMethod(BenchOp op, Workload& w, const Suite& suite, bool cub) {
    for (BufferSet& set : w.sets) {
      std::vector<const void*> srcs;
      std::vector<void*> dsts;
      std::vector<std::size_t> sizes;
      auto* flat = static_cast<char*>(set.flat.data_ptr());
      const int elem = flatgather::dtype_size(suite.flat_dtype);
      for (std::size_t i = 0; i < set.tensors.size(); ++i) {
        void* tensor = set.tensors[i].data_ptr();
        void* segment = flat + w.offsets[i] * elem;
        srcs.push_back(op == BenchOp::Gather ? tensor : segment);
        dsts.push_back(op == BenchOp::Gather ? segment : tensor);
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

// NOTE: [read bound]
// The roofline copy reads half the bytes it moves; an op that reads more than it writes (a
// narrowing scatter reads 4 of every 6 bytes, scatter_add 2 of 3 with same-size types, 6 of 8
// with bfloat16 tensors and a float32 flat buffer) is bound by how fast the threads can read,
// not by the copy. read_bound reads exactly the op's read bytes once (an XOR of 64-bit words
// split over the same OpenMP threads) and writes nothing; its GB/s counts the op's bytes read
// + written, like every method's, so read_bound / ours in scripts/bench-variants.py is how
// far ours is from only reading its input. A variant row (no summary column), CPU only.
// The XOR of p[0, n), a line (8 words) at a time, each line prefetched into L1 2 KiB ahead
// and into L2 8 KiB ahead, as the library's streamed copies read (src/cpu_loops.inc
// prefetch_line): a reference that read slower than ours would bound nothing.
std::uint64_t xor_words(const std::uint64_t* p, std::int64_t n) {
  std::uint64_t x[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
#if defined(__SSE2__)
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + 2048, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + 8192, _MM_HINT_T1);
#endif
    for (int k = 0; k < 8; ++k) x[k] ^= p[i + k];
  }
  for (; i < n; ++i) x[0] ^= p[i];
  for (int k = 1; k < 8; ++k) x[0] ^= x[k];
  return x[0];
}

class ReadBoundMethod final : public Method {
 public:
  ReadBoundMethod(BenchOp op, Workload& w, const Suite& suite) {
    const std::int64_t tensors = suite.tensor_bytes(), flat = suite.flat_bytes();
    const std::int64_t bytes = op == BenchOp::Scatter      ? flat
                               : op == BenchOp::ScatterAdd ? flat + tensors
                                                           : tensors;
    words_ = std::max<std::int64_t>(1, bytes / 8);
    const auto options = at::TensorOptions().dtype(at::kLong).device(to_device(w.dev));
    for (std::size_t k = 0; k < w.sets.size(); ++k) {
      buffers_.push_back(at::randint(std::numeric_limits<std::int64_t>::min(),
                                     std::numeric_limits<std::int64_t>::max(), {words_}, options));
    }
    const auto* p = buffers_[0].data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < words_; ++i) expected_ ^= static_cast<std::uint64_t>(p[i]);
  }
  void run(std::size_t set) override {
    const auto* p = reinterpret_cast<const std::uint64_t*>(buffers_[set].data_ptr<std::int64_t>());
    const std::int64_t words = words_;
    std::uint64_t all = 0;
    if (words * 8 < kRooflineParallelBytes) {
      all = xor_words(p, words);
    } else {
#pragma omp parallel reduction(^ : all)
      {
        const std::int64_t n = omp_get_num_threads(), t = omp_get_thread_num();
        const std::int64_t chunk = ((words + n - 1) / n + 7) / 8 * 8;
        const std::int64_t begin = std::min(words, t * chunk);
        const std::int64_t end = std::min(words, begin + chunk);
        all ^= xor_words(p + begin, end - begin);
      }
    }
    result_ = all;
  }
  int threads() const override {
    return omp_get_max_threads();
  }
  // Set 0's XOR against the one computed serially at construction: every word was read.
  std::optional<std::string> self_check() override {
    result_ = ~expected_;
    run(0);
    return result_ == expected_ ? "" : "wrong result: read_bound's XOR differs from a serial one";
  }

 private:
  std::int64_t words_ = 0;
  std::uint64_t expected_ = 0;
  std::uint64_t result_ = 0;
  std::vector<at::Tensor> buffers_;
};

// One plain copy of half the bytes the op moves (so read + written are equal): memcpy split over
// the same number of OpenMP threads flatgather uses, or cudaMemcpyAsync device to device.
class RooflineMethod final : public Method {
 public:
  RooflineMethod(BenchOp op, Workload& w, const Suite& suite) : w_(w) {
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
  int threads() const override {
    return w_.dev == Dev::CPU ? omp_get_max_threads() : 0;
  }
  // Poisons set 0's destination, copies, and compares with the source.
  std::optional<std::string> self_check() override {
    const auto& [src, dst] = buffers_[0];
    dst.fill_(0xA5);
    run(0);
    if (w_.dev == Dev::CUDA) cuda::synchronize();
    return at::equal(src, dst) ? "" : "wrong result: the roofline copy differs from its source";
  }

 private:
  Workload& w_;
  std::int64_t bytes_ = 0;
  std::vector<std::pair<at::Tensor, at::Tensor>> buffers_;
};

// ---- when each applies ------------------------------------------------------------------------

Applies yes() {
  return {};
}
Applies no() {
  return {Applies::No, ""};
}
Applies unavailable(std::string reason) {
  return {Applies::Unavailable, std::move(reason)};
}
Applies only_if(bool runs) {
  return runs ? yes() : no();
}

bool gpu_peers_on_cpu() {
  return std::getenv("FGBENCH_GPU_PEERS_ON_CPU") != nullptr;
}

// The streaming variants: gather and scatter on the CPU (scatter_add never streams, and
// the statistics loops have no streaming flavour).
bool cpu_copy(BenchOp op, Dev dev) {
  return dev == Dev::CPU && (op == BenchOp::Gather || op == BenchOp::Scatter);
}

// Ours with Options::check_tensors = Checked and the CPU knobs a variant changes.
template <bool Checked, flatgather::CpuStreaming Streaming = flatgather::CpuStreaming::Auto,
          std::int64_t TaskBytes = 0,
          flatgather::CpuSchedule Schedule = flatgather::CpuSchedule::Dynamic>
std::unique_ptr<Method> make_ours(BenchOp op, Workload& w, const Suite& s) {
  flatgather::torch::Options options;
  options.check_tensors = Checked;
  options.cpu_streaming = Streaming;
  options.cpu_tuning = {TaskBytes, Schedule};
  return std::make_unique<FlatgatherMethod>(op, w, s, options);
}

// The CPU work split variants (NOTE: [cpu work split]): every op, on the CPU.
Applies on_cpu(BenchOp, Dev dev, const Suite&) {
  return only_if(dev == Dev::CPU);
}

// The CUDA A/B variants of issue 19 (NOTE: [tuning overrides]): ours with one
// FLATGATHER_CUDA_TUNING key set. The strided ones run on suites with strided tensors. The
// misaligned ones on every suite under 2 GB (whether a tensor is misaligned depends on the
// layout the plan computes; llama-7b's are aligned, and its run is the GPU check's longest).
// Tile scaling changes nothing on plans so large that the fixed budget already gives
// kTilesPerWarp tiles per warp (over about 1 GB moved on an H200): llama-7b is left out. The
// byte-sized unroll only changes copies of 1- and 2-byte elements, the shared transposes only
// suites with transposed or channels_last tensors, the hardware conversions only copies that
// round float32 to bfloat16 or float16 (a gather into a narrower flat buffer, a scatter into
// narrower tensors: mixed-cast). The descriptor fetch (NOTE: [descriptor fetch] in
// kernels/tile_walk.cuh) matters most where tiles hold many copies (many-tiny, resnet50,
// plan-4mb), but changes every walk: every suite under 2 GB.
constexpr std::int64_t kVariantMaxBytes = std::int64_t{2} << 30;

bool under_variant_max(const Suite& suite) {
  return suite.tensor_bytes() + suite.flat_bytes() < kVariantMaxBytes;
}

Applies strided_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  bool strided = false;
  for (const TensorSpec& t : suite.tensors) strided = strided || t.storage != Storage::Contiguous;
  return only_if(dev == Dev::CUDA && strided);
}

Applies transpose_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  bool transposed = false;
  for (const TensorSpec& t : suite.tensors) {
    transposed =
        transposed || t.storage == Storage::Transposed || t.storage == Storage::ChannelsLast;
  }
  return only_if(dev == Dev::CUDA && transposed);
}

Applies misaligned_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  return only_if(dev == Dev::CUDA && under_variant_max(suite));
}

Applies tiles_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  return only_if(dev == Dev::CUDA && under_variant_max(suite));
}

Applies unroll_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  bool narrow = flatgather::dtype_size(suite.flat_dtype) <= 2;
  for (const TensorSpec& t : suite.tensors) narrow = narrow || flatgather::dtype_size(t.dtype) <= 2;
  return only_if(dev == Dev::CUDA && narrow);
}

bool is_16bit_float(flatgather::DType d) {
  return d == flatgather::DType::BFloat16 || d == flatgather::DType::Float16;
}

Applies convert_variant_applies(BenchOp, Dev dev, const Suite& suite) {
  bool rounds = false;  // float32 rounded to bfloat16/float16 one way or the other
  for (const TensorSpec& t : suite.tensors) {
    rounds = rounds ||
             (t.dtype == flatgather::DType::Float32 && is_16bit_float(suite.flat_dtype)) ||
             (is_16bit_float(t.dtype) && suite.flat_dtype == flatgather::DType::Float32);
  }
  return only_if(dev == Dev::CUDA && rounds);
}

template <const char* kSpec>
std::unique_ptr<Method> make_cuda_variant(BenchOp op, Workload& w, const Suite& s) {
  flatgather::torch::Options options;
  options.check_tensors = false;
  return std::make_unique<FlatgatherMethod>(op, w, s, options, kSpec);
}
constexpr char kStridedOld[] = "strided=old";
constexpr char kStridedNew[] = "strided=new";
constexpr char kMisalignedOld[] = "misaligned=old";
constexpr char kMisalignedNew[] = "misaligned=new";
constexpr char kTilesOld[] = "tile_scaling=old";
constexpr char kTilesNew[] = "tile_scaling=new";
constexpr char kUnrollOld[] = "unroll=old";
constexpr char kUnrollNew[] = "unroll=new";
constexpr char kTransposeOld[] = "transpose=old";
constexpr char kTransposeNew[] = "transpose=new";
constexpr char kConvertOld[] = "convert=old";
constexpr char kConvertNew[] = "convert=new";
constexpr char kDescriptorsOld[] = "descriptors=old";
constexpr char kDescriptorsNew[] = "descriptors=new";

// The byte-copy peers: CUDA, gather and scatter, one dtype and contiguous tensors.
Applies byte_copy_applies(BenchOp op, Dev dev, const Suite& suite, const std::string& why_not) {
  if ((op != BenchOp::Gather && op != BenchOp::Scatter) || dev != Dev::CUDA) return no();
  if (!why_not.empty()) return unavailable(why_not);
  if (!suite.plain()) return unavailable("byte copies cannot cast or follow strides");
  return yes();
}

}  // namespace

const std::vector<MethodSpec>& method_table() {
  static const std::vector<MethodSpec> table =
      {
          {"flatgather", Role::Ours, "ours, Options::check_tensors = false (hot-loop setting)",
           false, [](BenchOp, Dev, const Suite&) { return yes(); }, make_ours<false>},
          {"flatgather_checked", Role::OursChecked,
           "ours, check_tensors = true (the default: O(tensors) host\n"
           "work per call); on suites of 1,000 tensors or more",
           false,
           [](BenchOp, Dev,
              const Suite& s) { return only_if(s.tensors.size() >= kCheckedMinTensors); },
           make_ours<true>},
          {"flatgather_stream_on", Role::Variant,
           "ours with CpuStreaming::On: streaming stores on every\n"
           "gather and scatter (cpu; A/B of the Auto threshold)",
           false, [](BenchOp op, Dev dev, const Suite&) { return only_if(cpu_copy(op, dev)); },
           make_ours<false, flatgather::CpuStreaming::On>},
          {"flatgather_stream_off", Role::Variant,
           "ours with CpuStreaming::Off: normal stores only (cpu)", false,
           [](BenchOp op, Dev dev, const Suite&) { return only_if(cpu_copy(op, dev)); },
           make_ours<false, flatgather::CpuStreaming::Off>},
          {"flatgather_static", Role::Variant,
           "ours with CpuSchedule::Static: each thread one contiguous\n"
           "run of the tasks (cpu; A/B of the schedule)",
           false, on_cpu,
           make_ours<false, flatgather::CpuStreaming::Auto, 0, flatgather::CpuSchedule::Static>},
          {"flatgather_task_64k", Role::Variant,
           "ours with CpuTuning::task_bytes = 64 KiB (cpu; A/B of the\n"
           "task size, default 256 KiB to 4 MiB by the call's size)",
           false, on_cpu, make_ours<false, flatgather::CpuStreaming::Auto, 64 * 1024>},
          {"flatgather_task_4m", Role::Variant, "ours with CpuTuning::task_bytes = 4 MiB (cpu)",
           false, on_cpu, make_ours<false, flatgather::CpuStreaming::Auto, 4 * 1024 * 1024>},
          {"flatgather_strided_old", Role::Variant,
           "ours with strided=old: strided tensors element by element,\n"
           "64-bit divisions (cuda; suites with strided tensors)",
           false, strided_variant_applies, make_cuda_variant<kStridedOld>},
          {"flatgather_strided_new", Role::Variant,
           "ours with strided=new: register descriptor, fast division,\n"
           "4 elements in flight per lane (cuda; suites with strided tensors)",
           false, strided_variant_applies, make_cuda_variant<kStridedNew>},
          {"flatgather_misaligned_old", Role::Variant,
           "ours with misaligned=old: a source not congruent mod 16\n"
           "bytes read element by element (cuda; suites under 2 GB)",
           false, misaligned_variant_applies, make_cuda_variant<kMisalignedOld>},
          {"flatgather_misaligned_new", Role::Variant,
           "ours with misaligned=new: aligned 16-byte source words\n"
           "realigned by funnel shifts (cuda; suites under 2 GB)",
           false, misaligned_variant_applies, make_cuda_variant<kMisalignedNew>},
          {"flatgather_tiles_old", Role::Variant,
           "ours with FLATGATHER_CUDA_TUNING=tile_scaling=old: the\n"
           "fixed tile budget for every plan (cuda; suites under 2 GB)",
           false, tiles_variant_applies, make_cuda_variant<kTilesOld>},
          {"flatgather_tiles_new", Role::Variant,
           "ours with tile_scaling=new: the budget scaled to about 4 tiles\n"
           "per resident warp (cuda; suites under 2 GB)",
           false, tiles_variant_applies, make_cuda_variant<kTilesNew>},
          {"flatgather_unroll_old", Role::Variant,
           "ours with unroll=old: the unroll counted in packs (cuda;\n"
           "suites with 1- or 2-byte dtypes)",
           false, unroll_variant_applies, make_cuda_variant<kUnrollOld>},
          {"flatgather_unroll_new", Role::Variant,
           "ours with unroll=new: 64 bytes in flight per lane in same-dtype\n"
           "1- and 2-byte copies (cuda; suites with 1- or 2-byte dtypes)",
           false, unroll_variant_applies, make_cuda_variant<kUnrollNew>},
          {"flatgather_transpose_old", Role::Variant,
           "ours with transpose=old: transposed and channels_last tensors\n"
           "on the strided path (cuda; suites with such tensors)",
           false, transpose_variant_applies, make_cuda_variant<kTransposeOld>},
          {"flatgather_transpose_new", Role::Variant,
           "ours with transpose=new: whole rows in 32x32 blocks through a\n"
           "warp's shared tile (cuda; suites with such tensors)",
           false, transpose_variant_applies, make_cuda_variant<kTransposeNew>},
          {"flatgather_convert_old", Role::Variant,
           "ours with convert=old: float32 -> bfloat16/float16 by the\n"
           "software rounding of src/cast.h (cuda; suites that round float32)",
           false, convert_variant_applies, make_cuda_variant<kConvertOld>},
          {"flatgather_convert_new", Role::Variant,
           "ours with convert=new: the cvt.rn.bf16x2/f16x2 instructions, two\n"
           "elements each, and the NaN rule (cuda; suites that round float32)",
           false, convert_variant_applies, make_cuda_variant<kConvertNew>},
          {"flatgather_descriptors_old", Role::Variant,
           "ours with descriptors=old: each copy's descriptor read by\n"
           "every lane when the walk reaches it (cuda; suites under 2 GB)",
           false, tiles_variant_applies, make_cuda_variant<kDescriptorsOld>},
          {"flatgather_descriptors_new", Role::Variant,
           "ours with descriptors=new: up to 32 descriptors fetched across\n"
           "the lanes at once, staged in shared memory (cuda; suites under 2 GB)",
           false, tiles_variant_applies, make_cuda_variant<kDescriptorsNew>},
          {"torch_cat", Role::Peer,
           "at::cat_out of every t.reshape(-1) into the flat buffer (gather,\n"
           "in a byte buffer each viewed as bytes, .view(uint8); gather_norm:\n"
           "then at::linalg_vector_norm of it and the clip coefficient)",
           false,
           [](BenchOp op, Dev, const Suite&) {
    return only_if(op == BenchOp::Gather || op == BenchOp::GatherNorm);
           },
           [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
             return std::make_unique<TorchCatMethod>(op, w, s);
           }},
          {"foreach_norm", Role::Peer,
           "gather_norm: clip_grad_norm_'s path (at::_foreach_norm per dtype,\n"
           "stack, linalg_vector_norm, clip coefficient) and at::cat_out",
           false, [](BenchOp op, Dev, const Suite&) { return only_if(op == BenchOp::GatherNorm); },
           [](BenchOp, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
             return std::make_unique<ForeachNormMethod>(w, s);
           }},
          {"amp_unscale", Role::Peer,
           "unscale: GradScaler's at::_amp_foreach_non_finite_check_and_\n"
           "unscale_ per dtype (in place), then at::cat_out (cuda)",
           false,
           [](BenchOp op, Dev dev, const Suite&) {
    if (op != BenchOp::Unscale) return no();
    if (dev == Dev::CPU && !amp_unscale_on_cpu()) {
      return unavailable("no CPU kernel in LibTorch " TORCH_VERSION);
    }
    return yes();
           },
           [](BenchOp, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
             return std::make_unique<AmpUnscaleMethod>(w, s);
           }},
                                       {"copy_loop", Role::Peer,
                                        "one copy_ per tensor (add_ for scatter_add)", false,
                                        [](BenchOp op, Dev, const Suite&) {
    return only_if(!is_stats_op(op));
                                        },
                                        [](BenchOp op, Workload& w,
                                           const Suite& s) -> std::unique_ptr<Method> {
                                          return std::make_unique<CopyLoopMethod>(op, w, s);
                                        }},
      {"foreach_copy", Role::Peer, "at::_foreach_copy_ (cuda, LibTorch >= 2.1)", true,
       [](BenchOp op, Dev, const Suite&) {
    if (op != BenchOp::Gather && op != BenchOp::Scatter) return no();
    if (!FGBENCH_HAVE_FOREACH_COPY) {
      return unavailable("at::_foreach_copy_ is not in LibTorch " TORCH_VERSION);
    }
    return yes();
       },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<ForeachMethod>(op, w, s);
       }},
      {"foreach_add", Role::Peer, "at::_foreach_add_ (cuda, scatter_add)", true,
       [](BenchOp op, Dev, const Suite&) { return only_if(op == BenchOp::ScatterAdd); },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<ForeachMethod>(op, w, s);
       }},
      {"split_with_sizes_copy", Role::Peer,
       "at::split_with_sizes_copy_out (cuda, scatter, plain suites)", true,
       [](BenchOp op, Dev, const Suite& s) {
    if (op != BenchOp::Scatter) return no();
    return s.plain() ? yes() : unavailable("one dtype, contiguous tensors only");
       },
       [](BenchOp, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<SplitWithSizesCopyMethod>(w, s);
       }},
      {"cub_batched", Role::Peer, "cub::DeviceMemcpy::Batched, metadata prepared untimed (cuda)",
       true,
       [](BenchOp op, Dev dev, const Suite& s) {
    return byte_copy_applies(op, dev, s, cuda::cub_batched_unavailable());
       },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<BatchedCopyMethod>(op, w, s, true);
       }},
      {"memcpy_batch", Role::Peer, "cudaMemcpyBatchAsync, CUDA >= 12.8 (cuda)", true,
       [](BenchOp op, Dev dev, const Suite& s) {
    return byte_copy_applies(op, dev, s, cuda::memcpy_batch_unavailable());
       },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<BatchedCopyMethod>(op, w, s, false);
       }},
      {"read_bound", Role::Variant,
       "reads the bytes the op reads, once, and writes nothing: an op\n"
       "that reads more than it writes cannot beat it (cpu)",
       false, [](BenchOp, Dev dev, const Suite&) { return dev == Dev::CPU ? yes() : no(); },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<ReadBoundMethod>(op, w, s);
       }},
      {"roofline", Role::Roofline,
       "one plain copy of the same total bytes (memcpy on the same\n"
       "OpenMP threads / cudaMemcpyAsync device to device)",
       false, [](BenchOp, Dev, const Suite&) { return yes(); },
       [](BenchOp op, Workload& w, const Suite& s) -> std::unique_ptr<Method> {
         return std::make_unique<RooflineMethod>(op, w, s);
       }},
      };
  return table;
}

std::string op_not_run(BenchOp op, Dev dev) {
  if (op == BenchOp::Unscale && dev == Dev::CPU && !gpu_peers_on_cpu()) {
    return "cuda only (FGBENCH_GPU_PEERS_ON_CPU=1 runs it on the CPU)";
  }
  return "";
}

std::vector<const MethodSpec*> methods_for(BenchOp op, Dev dev, const Suite& suite,
                                           std::vector<Unavailable>* unavailable) {
  if (!op_not_run(op, dev).empty()) return {};
  if ((op == BenchOp::ScatterAdd || is_stats_op(op)) && !suite.floating()) {
    if (unavailable) {
      unavailable->push_back(
          {"every method", std::string(op_name(op)) + " needs floating tensors"});
    }
    return {};
  }
  const bool gpu_peers = dev == Dev::CUDA || gpu_peers_on_cpu();
  std::vector<const MethodSpec*> methods;
  for (const MethodSpec& spec : method_table()) {
    if (spec.gpu_peer && !gpu_peers) continue;
    const Applies a = spec.applies(op, dev, suite);
    if (a.kind == Applies::Yes) {
      methods.push_back(&spec);
    } else if (a.kind == Applies::Unavailable && unavailable) {
      unavailable->push_back({spec.name, a.reason});
    }
  }
  return methods;
}

}  // namespace fgbench

// The CUDA executor (host side): builds the device table once, uploads it once, and launches
// one kernel per gather / scatter / scatter_add on the caller's stream.
//
// NOTE: [graphs and plan lifetime]
// A kernel captured into a CUDA graph keeps its by-value KernelArgs, which point into the
// plan's live device table (NOTE: [device table] in kernels/device_table.h). So:
// - a rebind made between replays is seen by every later replay (rebind refuses while the
//   stream it is given is capturing, since the capture would freeze nothing of it);
// - the plan must outlive every graph (and graph exec) captured from it: destroying the plan
//   frees the table, and a later replay reads freed memory. Destroy graphs first.
// tests/test_cuda.cpp checks the first point and replays graphs while other threads build,
// rebind and destroy unrelated plans.
//
// NOTE: [capture mode]
// While any thread captures a stream in cudaStreamCaptureModeGlobal (PyTorch's default),
// cudaMalloc, cudaFree, synchronous copies and copies from pageable memory fail on every
// thread and invalidate that capture. Plan build, rebind and destruction do such calls, and
// may run on another thread during someone's capture; like PyTorch's allocator, they switch
// the calling thread to cudaStreamCaptureModeRelaxed around them (RelaxedCaptureMode), which
// is safe because none of them touches a capturing stream.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "device_table.h"
#include "executor.h"
#include "check.h"
#include "launch.h"
#include "op.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

namespace {

std::string cuda_error_message(cudaError_t error, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << "CUDA call " << call << " failed at " << file << ":" << line << ": "
     << cudaGetErrorName(error) << ": " << cudaGetErrorString(error);
  return os.str();
}

}  // namespace

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  throw_error(cuda_error_message(error, call, file, line));
}

void report_cuda_error(cudaError_t error, const char* call, const char* file, int line) noexcept {
  try {
    std::fprintf(stderr, "flatgather: %s\n", cuda_error_message(error, call, file, line).c_str());
  } catch (...) {
    std::fprintf(stderr, "flatgather: CUDA call %s failed at %s:%d\n", call, file, line);
  }
}

namespace {

/// Makes `device` current for a scope and restores the previous device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FG_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      FG_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  /// For destructors: reports failures instead of throwing.
  DeviceGuard(int device, std::nothrow_t) noexcept {
    FG_CUDA_CHECK_NOEXCEPT(cudaGetDevice(&previous_));
    if (previous_ != device) {
      FG_CUDA_CHECK_NOEXCEPT(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) FG_CUDA_CHECK_NOEXCEPT(cudaSetDevice(previous_));
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

/// Switches the calling thread to relaxed capture mode for a scope (NOTE: [capture mode]).
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() noexcept {
    exchanged_ = cudaThreadExchangeStreamCaptureMode(&mode_) == cudaSuccess;
  }
  ~RelaxedCaptureMode() {
    if (exchanged_) FG_CUDA_CHECK_NOEXCEPT(cudaThreadExchangeStreamCaptureMode(&mode_));
  }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
  bool exchanged_ = false;
};

/// A private non-blocking stream for the table upload, destroyed at the end of the scope.
class UploadStream {
 public:
  UploadStream() { FG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~UploadStream() { FG_CUDA_CHECK_NOEXCEPT(cudaStreamDestroy(stream_)); }
  UploadStream(const UploadStream&) = delete;
  UploadStream& operator=(const UploadStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

[[maybe_unused]] bool aligned_to(const void* p, int bytes) {  // for asserts
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes) == 0;
}

/// The device's tuning (kernels/tuning.h) with FLATGATHER_CUDA_TUNING applied
/// (NOTE: [tuning overrides]) and the streaming threshold resolved.
Tuning device_tuning(int major, int minor, int l2_bytes) {
  Tuning t = tuning_for(major, minor);
  if (const char* spec = std::getenv("FLATGATHER_CUDA_TUNING")) apply_tuning_overrides(t, spec);
  if (t.streaming_min_bytes == 0) t.streaming_min_bytes = l2_bytes > 0 ? l2_bytes : 1;
  return t;
}

class CudaExecutor final : public Executor {
 public:
  explicit CudaExecutor(ExecutorInput in)
      : device_(in.device.index), flat_dtype_(in.flat_dtype), flat_numel_(in.flat_numel) {
    // Plan validation checked the device index and the copy count (src/validate.cpp).
    assert(device_ >= 0 && device_ < cuda_device_count());
    assert(in.copies.size() < static_cast<std::size_t>(INT32_MAX));
    DeviceGuard guard(device_);
    int l2_bytes = 0;
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&major_, cudaDevAttrComputeCapabilityMajor, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&minor_, cudaDevAttrComputeCapabilityMinor, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device_));
    tuning_ = device_tuning(major_, minor_, l2_bytes);
    const std::int64_t moved = moved_bytes(in.copies, dtype_size(flat_dtype_));
    streaming_ = tuning_.streaming_min_bytes > 0 && moved >= tuning_.streaming_min_bytes;

    // Blocks per SM of each op's kernel: the occupancy calculator's answer, capped by the
    // tuning. The grid is sized from it, and so is the tile budget (NOTE: [tile scaling]).
    int blocks_per_sm[3] = {1, 1, 1};
    std::int64_t resident_warps = 0;
    const int warps_per_block = tuning_.block_threads / CopyPolicy::kWarpThreads;
    // Shared memory only for plans that take the shared transpose (NOTE: [shared transposes]).
    const std::int32_t tile_bytes =
        tuning_.transpose_path == CopyPath::New ? transpose_tile_bytes(in.copies, flat_dtype_) : 0;
    for (int op = 0; op < 3; ++op) {
      FG_CUDA_CHECK(kernel_occupancy(static_cast<Op>(op), streaming_,
                                     tuning_.descriptor_path == CopyPath::New,
                                     tuning_.block_threads, tile_bytes, &blocks_per_sm[op]));
      blocks_per_sm[op] = std::max(1, std::min(blocks_per_sm[op], tuning_.max_blocks_per_sm));
      resident_warps =
          std::max<std::int64_t>(resident_warps, static_cast<std::int64_t>(sm_count_) *
                                                     blocks_per_sm[op] * warps_per_block);
    }
    tile_params_ = plan_tile_params(in.copies, dtype_size(flat_dtype_), tuning_, resident_warps);

    // Host image of the device table (NOTE: [device table]). The plan validated every
    // pointer (alignment, device memory) and named the tensor when one was wrong.
    HostTable host = build_host_table(in.copies, flat_numel_, flat_dtype_, tile_params_);
    copies_ = host.copies;
    for (std::size_t c = 0; c < in.copies.size(); ++c) {
      const std::int32_t segment = in.copies[c].segment;
      if (segment < 0) continue;
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) {
        copies_of_segment_.resize(static_cast<std::size_t>(segment) + 1);
      }
      copies_of_segment_[static_cast<std::size_t>(segment)].push_back(static_cast<std::int32_t>(c));
    }
    num_strided_ = host.strided.size();
    num_tiles_ = static_cast<std::int64_t>(host.tiles.size()) - 1;

    const TableLayout layout = table_layout(host);
    table_bytes_ = layout.bytes;
    std::vector<unsigned char> image(table_bytes_, 0);
    const std::size_t copies_bytes = copies_.size() * sizeof(DeviceCopy);
    if (copies_bytes) std::memcpy(image.data(), copies_.data(), copies_bytes);
    if (!host.strided.empty()) {
      std::memcpy(image.data() + layout.strided_offset, host.strided.data(),
                  host.strided.size() * sizeof(CopyDesc));
      std::memcpy(image.data() + layout.indexers_offset, host.indexers.data(),
                  host.indexers.size() * sizeof(StridedIndexer));
      std::memcpy(image.data() + layout.transposes_offset, host.transposes.data(),
                  host.transposes.size() * sizeof(TransposeDesc));
    }
    std::memcpy(image.data() + layout.tiles_offset, host.tiles.data(),
                host.tiles.size() * sizeof(Tile));

    RelaxedCaptureMode relaxed;  // NOTE: [capture mode]
    void* d_table = nullptr;
    FG_CUDA_CHECK(cudaMalloc(&d_table, table_bytes_));
    d_table_ = static_cast<unsigned char*>(d_table);
    try {
      // The upload has landed before build returns (NOTE: [device table]): a copy from
      // pageable memory may return before its DMA completes, and a kernel on a non-blocking
      // stream would not be ordered after it.
      UploadStream upload;
      FG_CUDA_CHECK(cudaMemcpyAsync(d_table_, image.data(), table_bytes_, cudaMemcpyHostToDevice,
                                    upload.get()));
      FG_CUDA_CHECK(cudaStreamSynchronize(upload.get()));
      args_.d_copies = reinterpret_cast<const DeviceCopy*>(d_table_);
      args_.d_strided = reinterpret_cast<const CopyDesc*>(d_table_ + layout.strided_offset);
      args_.d_indexers = reinterpret_cast<const StridedIndexer*>(d_table_ + layout.indexers_offset);
      args_.d_transposes =
          reinterpret_cast<const TransposeDesc*>(d_table_ + layout.transposes_offset);
      args_.d_tiles = reinterpret_cast<const Tile*>(d_table_ + layout.tiles_offset);
      args_.num_tiles = num_tiles_;
      args_.num_copies = static_cast<std::int32_t>(copies_.size());
      args_.flat_dtype = flat_dtype_;
      args_.strided_path = tuning_.strided_path;
      args_.misaligned_path = tuning_.misaligned_path;
      args_.unroll_path = tuning_.unroll_path;
      args_.descriptor_path = tuning_.descriptor_path;
      args_.transpose_tile_bytes = tile_bytes;
      args_.convert_path = tuning_.convert_path;

      // Grid: the SMs times the blocks that fit on one, never more warps than tiles.
      const std::int64_t useful_blocks = (num_tiles_ + warps_per_block - 1) / warps_per_block;
      for (int op = 0; op < 3; ++op) {
        const std::int64_t grid = std::min<std::int64_t>(
            static_cast<std::int64_t>(sm_count_) * blocks_per_sm[op], useful_blocks);
        grid_[op] = static_cast<int>(std::max<std::int64_t>(grid, 1));
      }
      num_segments_ = in.num_segments;
      build_stats_scratch(in.copies, host.tiles, upload.get());
    } catch (...) {
      FG_CUDA_CHECK_NOEXCEPT(cudaFree(d_stats_));
      FG_CUDA_CHECK_NOEXCEPT(cudaFree(d_table_));
      throw;
    }
  }

  ~CudaExecutor() override {
    if (!d_table_) return;
    DeviceGuard guard(device_, std::nothrow);
    RelaxedCaptureMode relaxed;  // NOTE: [capture mode]
    FG_CUDA_CHECK_NOEXCEPT(cudaFree(d_stats_));
    FG_CUDA_CHECK_NOEXCEPT(cudaFree(d_table_));
  }

  CudaExecutor(const CudaExecutor&) = delete;
  CudaExecutor& operator=(const CudaExecutor&) = delete;

  void gather(void* flat, cudaStream_t stream) const override {
    launch(Op::Gather, flat, {}, stream);
  }
  // One launch, the statistics combined on the device (NOTE: [cuda stats scratch]).
  void gather_stats(void* flat, const StatsRequest& r, cudaStream_t stream) const override {
    assert(r.num_segments <= num_segments_);
    DeviceGuard guard(device_);
    KernelArgs args = args_;
    args.d_flat = flat;
    StatsArgs stats = stats_args_;
    stats.request = r;
    FG_CUDA_CHECK(launch_gather_stats(args, stats, grid_[0], tuning_.block_threads, stream));
  }
  void scatter(const void* flat, const Factor& scale, cudaStream_t stream) const override {
    if (scale.d_value == nullptr && scale.value == 1.0) {
      launch(Op::Scatter, const_cast<void*>(flat), {}, stream);  // the kernel only reads it
      return;
    }
    if (num_tiles_ == 0) return;
    DeviceGuard guard(device_);
    KernelArgs args = args_;
    args.d_flat = const_cast<void*>(flat);
    args.alpha = scale.value;
    args.d_alpha = scale.d_value;
    FG_CUDA_CHECK(launch_scatter_scaled(args, grid_[1], tuning_.block_threads, stream));
  }
  void scatter_add(const void* flat, const Factor& alpha, cudaStream_t stream) const override {
    launch(Op::ScatterAdd, const_cast<void*>(flat), alpha, stream);
  }

  /// A null `data` makes a segment a zero-filled placeholder, as on the CPU.
  ///
  /// NOTE: [batched rebind]
  /// Gradients reallocated by zero_grad(set_to_none) move every segment at once: the changes
  /// are applied to the host mirror of the table and the span of table entries between the
  /// first and the last changed copy goes up in ONE cudaMemcpyAsync on `stream`, not one per
  /// segment. The source is pageable host memory, which the runtime stages before returning,
  /// so a later rebind cannot change what this one uploads. Everything is checked before the
  /// mirror changes, so a refused rebind changes nothing. The plan has checked every new
  /// pointer (alignment, device memory, overlaps); this only asserts.
  void rebind(const std::vector<std::pair<int, void*>>& changes, cudaStream_t stream) override {
    std::int64_t first = -1, last = -1;
    for (const auto& [segment, data] : changes) {
      assert(segment >= 0);
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) continue;  // empty tensor
      for (std::int32_t c : copies_of_segment_[static_cast<std::size_t>(segment)]) {
        assert(!data || aligned_to(data, dtype_size(copies_[static_cast<std::size_t>(c)].dtype)));
        first = first < 0 ? c : std::min<std::int64_t>(first, c);
        last = std::max<std::int64_t>(last, c);
      }
    }
    if (first < 0) return;
    DeviceGuard guard(device_);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    FG_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    FG_CHECK(status == cudaStreamCaptureStatusNone,
             "rebind of " << changes.size()
                          << " segment(s) while the stream is being captured into a CUDA "
                          << "graph: the graph would keep reading the old memory; rebind "
                             "before capturing (or capture again after rebinding)");
    for (const auto& [segment, data] : changes) {
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) continue;
      for (std::int32_t c : copies_of_segment_[static_cast<std::size_t>(segment)]) {
        copies_[static_cast<std::size_t>(c)].d_data = data;
      }
    }
    const std::size_t offset = static_cast<std::size_t>(first) * sizeof(DeviceCopy);
    const std::size_t bytes = static_cast<std::size_t>(last - first + 1) * sizeof(DeviceCopy);
    RelaxedCaptureMode relaxed;  // a pageable copy (NOTE: [capture mode])
    FG_CUDA_CHECK(cudaMemcpyAsync(d_table_ + offset, copies_.data() + first, bytes,
                                  cudaMemcpyHostToDevice, stream));
  }

  // The scratch of gather with statistics (NOTE: [cuda stats scratch] in
  // kernels/gather_stats.cu): piece offsets per tile, one partial per piece (its segment
  // filled in here), per-segment sums and the block counter, in one allocation, uploaded on
  // `upload` and landed before the plan is returned (NOTE: [device table]).
  void build_stats_scratch(const std::vector<CopyDesc>& copies, const std::vector<Tile>& tiles,
                           cudaStream_t upload) {
    std::vector<std::int64_t> piece_begin(tiles.size(), 0);
    std::vector<StatsPartial> parts;
    const std::int32_t num_copies = static_cast<std::int32_t>(copies.size());
    for (std::int64_t t = 0; t + 1 < static_cast<std::int64_t>(tiles.size()); ++t) {
      piece_begin[static_cast<std::size_t>(t)] = static_cast<std::int64_t>(parts.size());
      for_each_piece(tiles.data(), t, copies.data(), num_copies,
                     [&](std::int32_t c, std::int64_t, std::int64_t) {
        StatsPartial p;
        p.segment = copies[static_cast<std::size_t>(c)].segment;
        parts.push_back(p);
      });
    }
    piece_begin.back() = static_cast<std::int64_t>(parts.size());
    const std::size_t parts_offset =
        TableLayout::align_up(piece_begin.size() * sizeof(std::int64_t));
    const std::size_t sums_offset =
        parts_offset + TableLayout::align_up(parts.size() * sizeof(StatsPartial));
    const std::size_t counter_offset =
        sums_offset +
        TableLayout::align_up(static_cast<std::size_t>(num_segments_) * sizeof(double));
    const std::size_t bytes = counter_offset + sizeof(unsigned int);
    std::vector<unsigned char> image(bytes, 0);
    std::memcpy(image.data(), piece_begin.data(), piece_begin.size() * sizeof(std::int64_t));
    if (!parts.empty()) {
      std::memcpy(image.data() + parts_offset, parts.data(), parts.size() * sizeof(StatsPartial));
    }
    void* d_stats = nullptr;
    FG_CUDA_CHECK(cudaMalloc(&d_stats, bytes));
    d_stats_ = static_cast<unsigned char*>(d_stats);
    FG_CUDA_CHECK(cudaMemcpyAsync(d_stats_, image.data(), bytes, cudaMemcpyHostToDevice, upload));
    FG_CUDA_CHECK(cudaStreamSynchronize(upload));
    stats_args_.d_piece_begin = reinterpret_cast<const std::int64_t*>(d_stats_);
    stats_args_.d_parts = reinterpret_cast<StatsPartial*>(d_stats_ + parts_offset);
    stats_args_.d_tensor_sums = reinterpret_cast<double*>(d_stats_ + sums_offset);
    stats_args_.d_counter = reinterpret_cast<unsigned int*>(d_stats_ + counter_offset);
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "cuda:" << device_ << " (sm_" << major_ << minor_ << ", " << sm_count_
       << " SMs, copies=" << copies_.size() << ", strided=" << num_strided_
       << ", tiles=" << num_tiles_ << ", table=" << table_bytes_
       << "B, grid gather/scatter/scatter_add=" << grid_[0] << "/" << grid_[1] << "/" << grid_[2]
       << ", streaming=" << (streaming_ ? "on" : "off") << ", plan tile=" << tile_params_.tile_bytes
       << "B, " << to_string(tuning_) << ")";
    return os.str();
  }

 private:
  void launch(Op op, void* d_flat, const Factor& alpha, cudaStream_t stream) const {
    if (num_tiles_ == 0) return;                          // nothing to move (every tensor is empty)
    assert(aligned_to(d_flat, dtype_size(flat_dtype_)));  // Plan::check_flat
    DeviceGuard guard(device_);
    KernelArgs args = args_;
    args.d_flat = d_flat;
    args.alpha = alpha.value;
    args.d_alpha = alpha.d_value;
    FG_CUDA_CHECK(launch_kernel(op, streaming_, args, grid_[static_cast<int>(op)],
                                tuning_.block_threads, stream));
  }

  int device_ = 0;
  DType flat_dtype_ = DType::Float32;
  std::int64_t flat_numel_ = 0;
  int major_ = 0;
  int minor_ = 0;
  int sm_count_ = 0;
  Tuning tuning_;
  TileParams tile_params_;  // this plan's (NOTE: [tile scaling])
  bool streaming_ = false;
  unsigned char* d_stats_ = nullptr;  // NOTE: [cuda stats scratch]
  StatsArgs stats_args_;
  std::int32_t num_segments_ = 0;
  std::vector<DeviceCopy> copies_;  // host mirror of the table's copies (rebind writes both)
  std::vector<std::vector<std::int32_t>> copies_of_segment_;
  std::size_t num_strided_ = 0;
  std::int64_t num_tiles_ = 0;
  std::size_t table_bytes_ = 0;
  unsigned char* d_table_ = nullptr;
  KernelArgs args_;
  int grid_[3] = {1, 1, 1};
};

}  // namespace

std::string cuda_pointer_problem(const void* p, int device) {
  if (p == nullptr) return "";
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, p);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // this query's own error: nothing else is cleared
    return std::string("is not memory CUDA knows (") + cudaGetErrorName(error) + ")";
  }
  switch (attributes.type) {
    case cudaMemoryTypeDevice:
      if (attributes.device == device) return "";
      return "is memory of cuda:" + std::to_string(attributes.device);
    case cudaMemoryTypeManaged: return "";
    case cudaMemoryTypeHost: return "is pinned host memory";
    default: return "is host memory";
  }
}

std::unique_ptr<Executor> make_cuda_executor(ExecutorInput input) {
  return std::make_unique<CudaExecutor>(std::move(input));
}

}  // namespace detail

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for the caller
    return 0;
  }
  return count;
}

bool cuda_available() {
  return cuda_device_count() > 0;
}

}  // namespace flatgather

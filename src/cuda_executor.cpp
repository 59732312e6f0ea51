// The CUDA executor (host side): builds the device table once, uploads it once, and launches
// one kernel per gather / scatter / scatter_add on the caller's stream.
//
// NOTE: [device table]
// One cudaMalloc holds, each part 256-byte aligned: the DeviceCopy of every copy, the
// CopyDesc (sizes, strides) of every strided copy, and the tiles (NOTE: [tiles]) plus their
// sentinel. It is built and copied to the device once, at plan build. A call then only
// launches a kernel whose by-value arguments point into it: no allocation, no host-to-device
// copy, nothing that a CUDA graph could not capture. rebind changes one pointer of the table
// with one 8-byte cudaMemcpyAsync ordered on the caller's stream; it refuses to run while
// that stream is being captured (a graph would keep replaying the old pointer).

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "copy.cuh"
#include "cuda_check.h"
#include "executor.h"
#include "flatgather/error.h"
#include "gather_scatter.h"
#include "tiles.cuh"

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

constexpr std::size_t kTableAlign = 256;

std::size_t align_up(std::size_t n) { return (n + kTableAlign - 1) / kTableAlign * kTableAlign; }

bool aligned_to(const void* p, int bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes) == 0;
}

class CudaExecutor final : public Executor {
 public:
  explicit CudaExecutor(ExecutorInput in)
      : device_(in.device.index), flat_dtype_(in.flat_dtype), flat_numel_(in.flat_numel) {
    const int count = cuda_device_count();
    FG_CHECK(device_ >= 0 && device_ < count,
             "the tensors are on " << to_string(in.device) << " but " << count
                                   << " CUDA device(s) can be used; use a device in [0, "
                                   << count << ")");
    FG_CHECK(in.copies.size() < static_cast<std::size_t>(INT32_MAX),
             "a plan holds at most 2^31 - 1 copies; got " << in.copies.size());
    DeviceGuard guard(device_);
    int l2_bytes = 0;
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&major_, cudaDevAttrComputeCapabilityMajor, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&minor_, cudaDevAttrComputeCapabilityMinor, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device_));
    tuning_ = tuning_for(major_, minor_);
    if (tuning_.streaming_min_bytes <= 0) tuning_.streaming_min_bytes = l2_bytes > 0 ? l2_bytes : 1;

    // Host image of the device table (NOTE: [device table]).
    for (const CopyDesc& d : in.copies) {
      FG_CHECK(!d.data || aligned_to(d.data, dtype_size(d.dtype)),
               "segment " << d.segment << " (" << dtype_name(d.dtype) << ", " << d.numel
                          << " elements) starts at an address that is not a multiple of its "
                             "element size; CUDA needs element-aligned tensors");
    }
    HostTable host = build_host_table(in.copies, flat_numel_, flat_dtype_,
                                      TileParams{tuning_.tile_bytes, tuning_.copy_cost_bytes});
    copies_ = host.copies;
    for (std::size_t c = 0; c < in.copies.size(); ++c) {
      const std::int32_t segment = in.copies[c].segment;
      if (segment < 0) continue;
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) {
        copies_of_segment_.resize(static_cast<std::size_t>(segment) + 1);
      }
      copies_of_segment_[static_cast<std::size_t>(segment)].push_back(static_cast<std::int32_t>(c));
    }
    const std::vector<CopyDesc>& strided = host.strided;
    const std::vector<Tile>& tiles = host.tiles;
    num_strided_ = strided.size();
    streaming_ = host.moved_bytes >= tuning_.streaming_min_bytes;
    num_tiles_ = static_cast<std::int64_t>(tiles.size()) - 1;

    const std::size_t copies_bytes = copies_.size() * sizeof(DeviceCopy);
    const std::size_t strided_offset = align_up(copies_bytes);
    const std::size_t tiles_offset = strided_offset + align_up(strided.size() * sizeof(CopyDesc));
    table_bytes_ = tiles_offset + tiles.size() * sizeof(Tile);
    std::vector<unsigned char> image(table_bytes_, 0);
    if (copies_bytes) std::memcpy(image.data(), copies_.data(), copies_bytes);
    if (!strided.empty()) std::memcpy(image.data() + strided_offset, strided.data(), strided.size() * sizeof(CopyDesc));
    std::memcpy(image.data() + tiles_offset, tiles.data(), tiles.size() * sizeof(Tile));

    void* table = nullptr;
    FG_CUDA_CHECK(cudaMalloc(&table, table_bytes_));
    table_ = static_cast<unsigned char*>(table);
    try {
      FG_CUDA_CHECK(cudaMemcpy(table_, image.data(), table_bytes_, cudaMemcpyHostToDevice));
      args_.copies = reinterpret_cast<const DeviceCopy*>(table_);
      args_.strided = reinterpret_cast<const CopyDesc*>(table_ + strided_offset);
      args_.tiles = reinterpret_cast<const Tile*>(table_ + tiles_offset);
      args_.num_tiles = num_tiles_;
      args_.num_copies = static_cast<std::int32_t>(copies_.size());
      args_.flat_dtype = flat_dtype_;

      // Grid: the SMs times the blocks that fit on one, never more warps than tiles.
      const int warps_per_block = tuning_.block_threads / CopyPolicy::kWarpThreads;
      const std::int64_t useful_blocks = (num_tiles_ + warps_per_block - 1) / warps_per_block;
      for (int op = 0; op < 3; ++op) {
        int blocks_per_sm = 0;
        FG_CUDA_CHECK(kernel_occupancy(static_cast<KernelOp>(op), streaming_, tuning_.block_threads, &blocks_per_sm));
        blocks_per_sm = std::max(1, std::min(blocks_per_sm, tuning_.max_blocks_per_sm));
        const std::int64_t grid = std::min<std::int64_t>(static_cast<std::int64_t>(sm_count_) * blocks_per_sm, useful_blocks);
        grid_[op] = static_cast<int>(std::max<std::int64_t>(grid, 1));
      }
    } catch (...) {
      FG_CUDA_CHECK_NOEXCEPT(cudaFree(table_));
      throw;
    }
  }

  ~CudaExecutor() override {
    if (!table_) return;
    DeviceGuard guard(device_, std::nothrow);
    FG_CUDA_CHECK_NOEXCEPT(cudaFree(table_));
  }

  CudaExecutor(const CudaExecutor&) = delete;
  CudaExecutor& operator=(const CudaExecutor&) = delete;

  void gather(void* flat, cudaStream_t stream) const override { launch(KernelOp::Gather, flat, 1.0, stream); }
  void scatter(const void* flat, cudaStream_t stream) const override {
    launch(KernelOp::Scatter, const_cast<void*>(flat), 1.0, stream);  // the kernel only reads it
  }
  void scatter_add(const void* flat, double alpha, cudaStream_t stream) const override {
    launch(KernelOp::ScatterAdd, const_cast<void*>(flat), alpha, stream);
  }

  /// A null `data` makes a segment a zero-filled placeholder, as on the CPU.
  ///
  /// NOTE: [batched rebind]
  /// Gradients reallocated by zero_grad(set_to_none) move every segment at once: the changes
  /// are applied to the host mirror of the table and the span of table entries between the
  /// first and the last changed copy goes up in ONE cudaMemcpyAsync on `stream`, not one per
  /// segment. The source is pageable host memory, which the runtime stages before returning,
  /// so a later rebind cannot change what this one uploads. Everything is checked before the
  /// mirror changes, so a refused rebind changes nothing.
  void rebind(const std::vector<std::pair<int, void*>>& changes, cudaStream_t stream) override {
    std::int64_t first = -1, last = -1;
    for (const auto& [segment, data] : changes) {
      FG_CHECK(segment >= 0, "rebind: segment index " << segment << " is negative");
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) continue;  // empty tensor
      for (std::int32_t c : copies_of_segment_[static_cast<std::size_t>(segment)]) {
        FG_CHECK(!data || aligned_to(data, dtype_size(copies_[static_cast<std::size_t>(c)].dtype)),
                 "rebind: the new data of segment " << segment << " is not aligned to its element size ("
                                                    << dtype_name(copies_[static_cast<std::size_t>(c)].dtype) << ")");
        first = first < 0 ? c : std::min<std::int64_t>(first, c);
        last = std::max<std::int64_t>(last, c);
      }
    }
    if (first < 0) return;
    DeviceGuard guard(device_);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    FG_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    FG_CHECK(status == cudaStreamCaptureStatusNone,
             "rebind of " << changes.size() << " segment(s) while the stream is being captured into a CUDA "
                          << "graph: the graph would keep reading the old memory; rebind "
                             "before capturing (or capture again after rebinding)");
    for (const auto& [segment, data] : changes) {
      if (static_cast<std::size_t>(segment) >= copies_of_segment_.size()) continue;
      for (std::int32_t c : copies_of_segment_[static_cast<std::size_t>(segment)]) {
        copies_[static_cast<std::size_t>(c)].data = data;
      }
    }
    const std::size_t offset = static_cast<std::size_t>(first) * sizeof(DeviceCopy);
    const std::size_t bytes = static_cast<std::size_t>(last - first + 1) * sizeof(DeviceCopy);
    FG_CUDA_CHECK(cudaMemcpyAsync(table_ + offset, copies_.data() + first, bytes, cudaMemcpyHostToDevice, stream));
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "cuda:" << device_ << " (sm_" << major_ << minor_ << ", " << sm_count_ << " SMs, copies=" << copies_.size()
       << ", strided=" << num_strided_ << ", tiles=" << num_tiles_ << ", table=" << table_bytes_
       << "B, grid gather/scatter/scatter_add=" << grid_[0] << "/" << grid_[1] << "/" << grid_[2]
       << ", streaming=" << (streaming_ ? "on" : "off") << ", " << to_string(tuning_) << ")";
    return os.str();
  }

 private:
  void launch(KernelOp op, void* flat, double alpha, cudaStream_t stream) const {
    if (num_tiles_ == 0) return;  // nothing to move (every tensor is empty)
    const int flat_size = dtype_size(flat_dtype_);
    FG_CHECK(aligned_to(flat, flat_size),
             kernel_op_name(op) << ": the flat buffer's address is not a multiple of its element size ("
                                << dtype_name(flat_dtype_) << ", " << flat_size << " bytes)");
    DeviceGuard guard(device_);
    KernelArgs args = args_;
    args.flat = flat;
    args.alpha = alpha;
    FG_CUDA_CHECK(launch_kernel(op, streaming_, args, grid_[static_cast<int>(op)], tuning_.block_threads, stream));
  }

  int device_ = 0;
  DType flat_dtype_ = DType::Float32;
  std::int64_t flat_numel_ = 0;
  int major_ = 0;
  int minor_ = 0;
  int sm_count_ = 0;
  Tuning tuning_;
  bool streaming_ = false;
  std::vector<DeviceCopy> copies_;  // host mirror of the table's copies (rebind writes both)
  std::vector<std::vector<std::int32_t>> copies_of_segment_;
  std::size_t num_strided_ = 0;
  std::int64_t num_tiles_ = 0;
  std::size_t table_bytes_ = 0;
  unsigned char* table_ = nullptr;
  KernelArgs args_;
  int grid_[3] = {1, 1, 1};
};

}  // namespace

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

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace flatgather

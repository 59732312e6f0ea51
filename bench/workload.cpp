// The resident suite of flatgather-bench: random tensors and flat buffers on one device.
#include "workload.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <ATen/ATen.h>

#include "cuda_peers.h"
#include "flatgather/torch.h"
#include "methods.h"

namespace fgbench {
namespace {

constexpr double kRotateCacheMultiple = 3.0;
constexpr int kMaxSets = 8;

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
    case Storage::Transposed:
      t = at::empty({spec.shape.at(1), spec.shape.at(0)}, options).t();
      break;
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

// Buffer sets that together span kRotateCacheMultiple x the cache (NOTE: [honest timing]).
int sets_for(const Suite& suite, Dev dev) {
  const double footprint = static_cast<double>(suite.tensor_bytes() + suite.flat_bytes());
  const double want = kRotateCacheMultiple * static_cast<double>(cache_bytes(dev));
  if (footprint <= 0 || footprint >= want) return 1;
  return std::min(kMaxSets, static_cast<int>(std::ceil(want / footprint)));
}

}  // namespace

Workload::~Workload() = default;

const char* op_name(BenchOp op) {
  switch (op) {
    case BenchOp::GatherNorm: return "gather_norm";
    case BenchOp::Unscale: return "unscale";
    default: return flatgather::detail::op_name(library_op(op));
  }
}

std::optional<BenchOp> op_from_name(const std::string& name) {
  for (BenchOp op : kAllOps) {
    if (name == op_name(op)) return op;
  }
  return std::nullopt;
}

flatgather::detail::Op library_op(BenchOp op) {
  using flatgather::detail::Op;
  switch (op) {
    case BenchOp::Scatter: return Op::Scatter;
    case BenchOp::ScatterAdd: return Op::ScatterAdd;
    default: return Op::Gather;
  }
}

bool is_stats_op(BenchOp op) {
  return op == BenchOp::GatherNorm || op == BenchOp::Unscale;
}

// Statistics cost reads only: the results are a few floats.
std::int64_t bytes_moved(BenchOp op, const Suite& suite) {
  const std::int64_t tensors = suite.tensor_bytes(), flat = suite.flat_bytes();
  return op == BenchOp::ScatterAdd ? flat + 2 * tensors : flat + tensors;
}

at::Device to_device(Dev dev) {
  return dev == Dev::CPU ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0);
}

Workload& workload_for(Dev dev, const Suite& suite) {
  if (g_workload && g_workload->dev == dev && g_workload->suite_name == suite.name) {
    return *g_workload;
  }
  g_workload.reset();  // free the previous suite first
  auto w = std::make_unique<Workload>();
  w->dev = dev;
  w->suite_name = suite.name;
  w->offsets = suite.flat_offsets();
  for (const TensorSpec& t : suite.tensors) w->names.push_back(t.name);
  const int nsets = sets_for(suite, dev);
  std::fprintf(stderr, "  building %s on %s: %zu tensors, %s, %d buffer set%s\n",
               suite.name.c_str(), dev_name(dev), suite.tensors.size(),
               format_bytes(suite.tensor_bytes()).c_str(), nsets, nsets > 1 ? "s" : "");
  at::manual_seed(1234);
  const at::Device device = to_device(dev);
  const auto flat_options =
      at::TensorOptions().dtype(flatgather::torch::to_scalar_type(suite.flat_dtype)).device(device);
  for (int s = 0; s < nsets; ++s) {
    BufferSet set;
    set.tensors.reserve(suite.tensors.size());
    for (const TensorSpec& spec : suite.tensors) set.tensors.push_back(make_tensor(spec, device));
    const std::int64_t flat_numel = suite.flat_numel();
    set.flat = at::empty({flat_numel}, flat_options);
    // In pieces: one float32 temporary the size of the 7B suite's flat buffer would be 27 GB.
    const std::int64_t piece = std::int64_t{1} << 26;
    for (std::int64_t begin = 0; begin < flat_numel; begin += piece) {
      const std::int64_t n = std::min(piece, flat_numel - begin);
      at::Tensor part = set.flat.narrow(0, begin, n);
      if (suite.byte_plan()) {
        part.random_(0, 256);
      } else {
        part.copy_(at::randn({n}, at::TensorOptions().device(device)));
      }
    }
    w->sets.push_back(std::move(set));
  }
  if (dev == Dev::CUDA) cuda::synchronize();
  g_workload = std::move(w);
  return *g_workload;
}

Workload* resident_workload() {
  return g_workload.get();
}

void release_workload() {
  g_workload.reset();
}

std::vector<at::Tensor> flat_views(const Workload& w, const Suite& suite, const at::Tensor& flat) {
  std::vector<at::Tensor> views;
  views.reserve(suite.tensors.size());
  for (std::size_t i = 0; i < suite.tensors.size(); ++i) {
    const TensorSpec& t = suite.tensors[i];
    if (suite.byte_plan()) {  // the tensor's bytes, viewed as its own dtype
      views.push_back(flat.narrow(0, w.offsets[i], t.nbytes())
                          .view(flatgather::torch::to_scalar_type(t.dtype))
                          .view(t.shape));
    } else {
      views.push_back(flat.narrow(0, w.offsets[i], t.numel()).view(t.shape));
    }
  }
  return views;
}

std::vector<at::Tensor> cat_parts(const Workload& w, const Suite& suite,
                                  const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> parts;
  parts.reserve(tensors.size());
  std::int64_t cursor = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor part = tensors[i].reshape(-1);
    if (suite.byte_plan()) part = part.view(at::kByte);
    if (w.offsets[i] > cursor) parts.push_back(at::zeros({w.offsets[i] - cursor}, part.options()));
    cursor = w.offsets[i] + part.numel();
    parts.push_back(std::move(part));
  }
  return parts;
}

}  // namespace fgbench

// The LibTorch adapter's gather with statistics and scaled scatter / scatter_add
// (include/flatgather/torch.h StatsOptions, Factor; NOTE: [gather statistics] in src/stats.h).
#include <string>

#include "check.h"
#include "flatgather/torch.h"

namespace flatgather {
namespace torch {

namespace {

// A Factor as the core takes it; a tensor must be one float32 on the plan's device.
flatgather::Factor core_factor(const Factor& f, const at::Device& device, const char* op,
                               const char* what) {
  if (!f.tensor.defined()) return flatgather::Factor(f.value);
  const at::Tensor& t = f.tensor;
  FG_CHECK(t.numel() == 1 && t.scalar_type() == at::kFloat && t.device() == device,
           op << ": " << what << " must be a number or a one-element float32 tensor on " << device
              << " (e.g. torch.tensor(0.5, device='" << device << "')), got a tensor of shape "
              << t.sizes() << ", " << c10::toString(t.scalar_type()) << ", on " << t.device());
  return flatgather::Factor::device(t.data_ptr<float>());
}

}  // namespace

GatherStats Plan::gather(const at::Tensor& out, const StatsOptions& options) const {
  const cudaStream_t stream = prepare_call(out, "gather");
  flatgather::GatherOptions o;
  o.scale = core_factor(options.scale, device(), "gather", "scale");
  // The statistics asked for are views of ONE new float32 tensor (one allocation per call):
  // [norm, found_inf, clip_coef, tensor_norms...] as asked. Fresh per call, so a result never
  // aliases an earlier call's; the caching allocator's allocation is graph-capturable.
  const std::int64_t num_segments = static_cast<std::int64_t>(layout().segments().size());
  const std::int64_t count = (options.norm ? 1 : 0) + (options.check_finite ? 1 : 0) +
                             (options.max_norm ? 1 : 0) + (options.tensor_norms ? num_segments : 0);
  GatherStats stats;
  at::Tensor storage;
  std::int64_t next = 0;
  auto take = [&](std::int64_t n) -> float* {
    float* p = storage.data_ptr<float>() + next;
    next += n;
    return p;
  };
  if (count > 0 || options.tensor_norms) {
    storage = at::empty({count}, at::TensorOptions().dtype(at::kFloat).device(device()));
  }
  if (options.norm) {
    stats.norm = storage[next];
    o.d_norm = take(1);
  }
  if (options.check_finite) {
    stats.found_inf = storage[next];
    o.d_found_inf = take(1);
  }
  if (options.max_norm) {
    stats.clip_coef = storage[next];
    o.d_clip_coef = take(1);
    o.max_norm = *options.max_norm;
  }
  if (options.tensor_norms) {
    stats.tensor_norms = storage.narrow(0, next, num_segments);
    o.d_tensor_norms = take(num_segments);
  }
  core().gather(out.data_ptr(), out.numel(), o, stream);
  return stats;
}

void Plan::scatter(const at::Tensor& flat, const Factor& scale) const {
  const cudaStream_t stream = prepare_call(flat, "scatter");
  core().scatter(flat.data_ptr(), flat.numel(), core_factor(scale, device(), "scatter", "scale"),
                 stream);
  after_write();
}

void Plan::scatter_add(const at::Tensor& flat, const Factor& alpha) const {
  const cudaStream_t stream = prepare_call(flat, "scatter_add");
  core().scatter_add(flat.data_ptr(), flat.numel(),
                     core_factor(alpha, device(), "scatter_add", "alpha"), stream);
  after_write();
}

}  // namespace torch
}  // namespace flatgather

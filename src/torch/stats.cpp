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
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device());
  GatherStats stats;
  flatgather::GatherOptions o;
  o.scale = core_factor(options.scale, device(), "gather", "scale");
  if (options.norm) {
    stats.norm = at::empty({}, f32);
    o.d_norm = stats.norm.data_ptr<float>();
  }
  if (options.tensor_norms) {
    stats.tensor_norms = at::empty({static_cast<std::int64_t>(layout().segments().size())}, f32);
    o.d_tensor_norms = stats.tensor_norms.data_ptr<float>();
  }
  if (options.check_finite) {
    stats.found_inf = at::empty({}, f32);
    o.d_found_inf = stats.found_inf.data_ptr<float>();
  }
  if (options.max_norm) {
    stats.clip_coef = at::empty({}, f32);
    o.d_clip_coef = stats.clip_coef.data_ptr<float>();
    o.max_norm = *options.max_norm;
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

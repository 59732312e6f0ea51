#pragma once
// Internal: gradient statistics computed by gather in the same pass (Plan::gather with
// GatherOptions), shared by the CPU executor and the CUDA kernels.
//
// NOTE: [gather statistics]
// What is computed (plan.h GatherOptions has the public words):
// - written value  w = cast_to_flat(source * scale), the product in float32 (float64 when
//   the source or the flat dtype is float64); scale 1 writes the same bits as a plain gather.
// - norm           sqrt(sum of w^2 over every written value), padding adding nothing;
//   tensor_norms   the same per segment; found_inf: 1.0 when any SOURCE value (before the
//   scale) is NaN or +-inf, else 0.0; clip_coef: min(1, max_norm / (norm + 1e-6)) in float32.
// - A NaN or infinite value makes the norms NaN or inf, as in torch.linalg.vector_norm.
// How, deterministically:
// - The work is cut into units at plan build (CPU: the executor's pieces, NOTE: [cpu work
//   split]; CUDA: the (tile, copy) pieces of NOTE: [tiles]), independently of the thread or
//   block count. Each unit sums w*w in float64 in element order into its own slot (no shared
//   accumulator, no floating-point atomics); the slots are then added in unit order (= flat
//   order) in float64, per segment and in total, and rounded once to float32.
// - So a plan gives the same bits on every call, for every thread count (CPU) and every grid
//   size (CUDA, for a given tuning: the tile cut decides the units).
// Error bound: each square w*w of a float32/16 value is exact in float64 (48 significant bits
// at most) and each float64 addition adds a relative error of at most 2^-53, so the sum of
// n squares is within n * 2^-53 (relative; all terms are non-negative) of the exact sum:
// 1.2e-9 for n = 11.7M (ResNet-18). sqrt and the final rounding to float32 add 2^-24 each, so
// the float32 norm is within 1.3e-7 relative of the exact norm of the written values. Float64
// values: w*w rounds too, giving (n + 1) * 2^-53 before the sqrt.
#include <cmath>
#include <cstdint>

#include "flatgather/config.h"

namespace flatgather {
namespace detail {

/// One unit's contribution (see NOTE: [gather statistics]).
struct StatsPartial {
  double sumsq = 0.0;
  std::int32_t nonfinite = 0;  ///< 1 when a source value was NaN or infinite
  std::int32_t segment = -1;   ///< the unit's segment, -1 for padding
};

/// What a gather with statistics writes, resolved by the plan from GatherOptions.
struct StatsRequest {
  double scale = 1.0;  ///< used when d_scale is null
  const float* d_scale = nullptr;
  float* d_norm = nullptr;
  float* d_tensor_norms = nullptr;
  float* d_found_inf = nullptr;
  float* d_clip_coef = nullptr;
  double max_norm = 0.0;
  std::int32_t num_segments = 0;
  bool wants_sumsq() const { return d_norm || d_tensor_norms || d_clip_coef; }
};

/// clip_grad_norm_'s coefficient, computed as it does in float32.
FG_HOST_DEVICE FG_FORCE_INLINE float clip_coefficient(double max_norm, float norm) {
  const float coef = static_cast<float>(max_norm) / (norm + 1e-6f);
  return coef > 1.0f ? 1.0f : coef;  // NaN stays NaN, as with torch.clamp(max=1)
}

/// Adds the units' partials in unit order and writes the results (the combine step of NOTE:
/// [gather statistics]). `part(p)` returns unit p's StatsPartial (the CUDA kernel loads them
/// past L1). `tensor_sums` has num_segments slots of scratch when d_tensor_norms is set.
template <class Part>
FG_HOST_DEVICE inline void finish_stats(const StatsRequest& r, Part&& part, std::int64_t num_parts,
                                        double* tensor_sums) {
  double total = 0.0;
  std::int32_t nonfinite = 0;
  if (r.d_tensor_norms) {
    for (std::int32_t s = 0; s < r.num_segments; ++s) tensor_sums[s] = 0.0;
  }
  for (std::int64_t p = 0; p < num_parts; ++p) {
    const StatsPartial u = part(p);
    total += u.sumsq;
    nonfinite |= u.nonfinite;
    if (r.d_tensor_norms && u.segment >= 0) tensor_sums[u.segment] += u.sumsq;
  }
  const float norm = static_cast<float>(sqrt(total));
  if (r.d_norm) *r.d_norm = norm;
  if (r.d_clip_coef) *r.d_clip_coef = clip_coefficient(r.max_norm, norm);
  if (r.d_found_inf) *r.d_found_inf = nonfinite ? 1.0f : 0.0f;
  if (r.d_tensor_norms) {
    for (std::int32_t s = 0; s < r.num_segments; ++s) {
      r.d_tensor_norms[s] = static_cast<float>(sqrt(tensor_sums[s]));
    }
  }
}

}  // namespace detail
}  // namespace flatgather

#pragma once
// The resident suite: a suite's tensors and flat buffers built on one device, in as many
// buffer sets as the cache rule asks for (NOTE: [honest timing] in timing.cpp).

#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "devices.h"
#include "op.h"
#include "suites.h"

namespace fgbench {

/// What a benchmark times. The first three are the library's ops (flatgather::detail::Op);
/// the others are a gather that also computes gradient statistics, timed against the peers
/// that produce the same results (NOTE: [gather statistics] in src/stats.h):
/// - GatherNorm: the flat buffer, its L2 norm and clip_grad_norm_'s clip coefficient
///   (max_norm kMaxNorm), against cat + vector_norm and the _foreach_norm path.
/// - Unscale: the flat buffer of the tensors times a device scalar, and found_inf, against
///   _amp_foreach_non_finite_check_and_unscale_ + cat (GradScaler's unscale). CUDA only
///   (see unscale_devices in methods.cpp).
enum class BenchOp { Gather, Scatter, ScatterAdd, GatherNorm, Unscale };

/// Every op, in the order they run and are summarised.
constexpr BenchOp kAllOps[] = {BenchOp::Gather, BenchOp::Scatter, BenchOp::ScatterAdd,
                               BenchOp::GatherNorm, BenchOp::Unscale};

/// The ops run when --ops is not given: the copies. The statistics ops add a third to the
/// run's time and are asked for with --ops.
constexpr BenchOp kDefaultOps[] = {BenchOp::Gather, BenchOp::Scatter, BenchOp::ScatterAdd};

/// The op's name in benchmark names and on the command line: the library's op names, then
/// "gather_norm" and "unscale".
const char* op_name(BenchOp op);

/// The op named `name`, or nullopt.
std::optional<BenchOp> op_from_name(const std::string& name);

/// The library op that `op` runs (the statistics ops are gathers).
flatgather::detail::Op library_op(BenchOp op);

/// True for the statistics ops (they need floating tensors).
bool is_stats_op(BenchOp op);

/// GatherNorm's max_norm (clip_grad_norm_'s argument): small enough that the random suites
/// clip, so the coefficient is not the constant 1.
constexpr double kMaxNorm = 1.0;

/// Unscale's factor, the device scalar 1 / loss_scale. 1: the peer unscales the suite's
/// tensors in place, and any other factor would change them on every call (to zero after a
/// few calls), so that the methods after it would read other data. The work does not depend
/// on the value, which neither ours nor the peer can see before the kernel reads it.
constexpr float kUnscaleFactor = 1.0f;

/// scatter_add's alpha. 1, so that every compute order gives the same bits and the check
/// can be exact.
constexpr double kAlpha = 1.0;

/// Bytes one call of `op` reads plus writes: the same for every method.
std::int64_t bytes_moved(BenchOp op, const Suite& suite);

at::Device to_device(Dev dev);

/// One copy of the suite's tensors and of its flat buffer.
struct BufferSet {
  std::vector<at::Tensor> tensors;
  at::Tensor flat;
};

class Method;

struct Workload {
  Dev dev = Dev::CPU;
  std::string suite_name;
  std::vector<std::int64_t> offsets;  // Suite::flat_offsets()
  std::vector<std::string> names;
  std::vector<BufferSet> sets;
  // The method of the benchmark running now (null after a failed check). Only one is kept:
  // benchmarks run one after another, and the 7B suite's roofline buffers alone are 40 GB.
  std::map<std::string, std::unique_ptr<Method>> methods;

  ~Workload();
};

/// The resident workload for (dev, suite), built on first use (the previous one is freed
/// first: one suite stays resident at a time). Tensors and flat buffers are random (seeded).
Workload& workload_for(Dev dev, const Suite& suite);

/// The resident workload, or null.
Workload* resident_workload();

/// Frees the resident suite.
void release_workload();

/// Per-tensor views of `flat`, shaped like the tensors and (in a byte plan) of their dtypes
/// (for the per-tensor peers and the check).
std::vector<at::Tensor> flat_views(const Workload& w, const Suite& suite, const at::Tensor& flat);

/// The parts whose torch::cat is the flat buffer: each tensor's t.reshape(-1) (viewed as bytes,
/// .view(uint8), in a byte plan), with zeros of the flat dtype where a byte plan pads before
/// a tensor of a larger element size (the zeros are allocated here).
std::vector<at::Tensor> cat_parts(const Workload& w, const Suite& suite,
                                  const std::vector<at::Tensor>& tensors);

}  // namespace fgbench

#pragma once
// The methods flatgather-bench times, ours and every peer, in ONE table: each entry's name,
// its --help text, when it applies and how it is made. Everything else (registration, the
// usage text, the check, the summary) reads the table; no other file spells a method's name.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "workload.h"

namespace fgbench {

/// The statistics of one call of a statistics op (BenchOp::GatherNorm, Unscale): tensors on
/// the workload's device, undefined when the op does not produce them.
struct StatsResult {
  at::Tensor norm;       ///< 0-dim: the L2 norm of the flat buffer's values
  at::Tensor clip_coef;  ///< 0-dim: min(1, kMaxNorm / (norm + 1e-6))
  at::Tensor found_inf;  ///< 0-dim: 1 when a source value is NaN or infinite, else 0
  /// Relative tolerance of norm and clip_coef against the float64 reference (check.h).
  double tolerance = 0;
};

/// One method prepared over every buffer set of the resident workload.
class Method {
 public:
  virtual ~Method() = default;
  virtual void run(std::size_t set) = 0;
  /// CPU threads it runs on (0 on the GPU).
  virtual int threads() const { return 0; }
  /// Stream to time on (nullptr: the legacy default stream).
  virtual void* stream() const { return nullptr; }
  /// A method that is not one of the ops (the roofline) checks its own result on set 0 and
  /// returns "" or what went wrong; the others return nullopt and are compared with LibTorch.
  virtual std::optional<std::string> self_check() { return std::nullopt; }
  /// What a statistics op's method computed in its last call (check.cpp compares it).
  virtual StatsResult stats() const { return {}; }
};

/// What a method is in the summary.
enum class Role {
  Ours,         ///< the "ours" column
  OursChecked,  ///< the "checked" column
  Peer,         ///< a candidate for "best peer"
  Roofline,     ///< the "roof" of "ours/roof"
  Variant,      ///< ours with one knob changed, for A/B in one run (rows only, no column)
};

/// Whether a method runs for one (op, device, suite).
struct Applies {
  enum Kind {
    Yes,
    No,           ///< does not apply (scatter-only peer on gather, ...): not mentioned
    Unavailable,  ///< would apply but cannot run here: `reason` is reported
  } kind = Yes;
  std::string reason;
};

struct MethodSpec {
  const char* name;
  Role role;
  /// For --help: what it is, with the devices and limits in parentheses; may span lines.
  const char* help;
  /// A peer that PyTorch users reach for on a GPU. It runs on the CPU only when
  /// FGBENCH_GPU_PEERS_ON_CPU=1 (slow there, but it checks its set-up and results).
  bool gpu_peer;
  Applies (*applies)(BenchOp op, Dev dev, const Suite& suite);
  std::unique_ptr<Method> (*make)(BenchOp op, Workload& w, const Suite& suite);
};

/// Every method, ours first and the roofline last: the order benchmarks run in.
const std::vector<MethodSpec>& method_table();

/// A method that is left out, and why.
struct Unavailable {
  std::string method;
  std::string reason;
};

/// Why `op` is not run on `dev` at all, or "": unscale runs on cuda only (its peer,
/// _amp_foreach_non_finite_check_and_unscale_, has no CPU kernel in LibTorch 1.13), and on the
/// CPU only with FGBENCH_GPU_PEERS_ON_CPU=1 (to check ours and the set-up without a GPU).
std::string op_not_run(BenchOp op, Dev dev);

/// The methods run for (op, device, suite), in table order. Those that cannot run here are
/// appended to `unavailable` (when given).
std::vector<const MethodSpec*> methods_for(BenchOp op, Dev dev, const Suite& suite,
                                           std::vector<Unavailable>* unavailable = nullptr);

}  // namespace fgbench

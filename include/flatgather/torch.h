#pragma once
/// \file torch.h
/// The LibTorch adapter: plans from tensors or modules, flat tensors, views, current stream.
/// Link `flatgather::torch`.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "flatgather/plan.h"

namespace flatgather {
namespace torch {

/// What to do with a parameter whose gradient is undefined (never computed, or set to None
/// by zero_grad).
enum class MissingGrad {
  Error,     ///< throw, naming the parameter (default)
  ZeroFill,  ///< keep its segment: gather writes zeros, scatter and scatter_add skip it
  Skip,      ///< leave the parameter out of the layout
};

/// Which tensors of a module go into the plan. Order: module registration order, the same
/// as Python's `state_dict()`: for each submodule (pre-order), its own parameters, then its
/// own buffers.
///
///   Selection s; s.kind = Selection::Kind::Weights; s.trainable_only = true;
struct Selection {
  enum class Kind {
    All,      ///< every selected tensor
    Weights,  ///< tensors whose last name component contains "weight"
    Biases,   ///< tensors whose last name component contains "bias"
  };
  bool parameters = true;  ///< include parameters
  bool buffers = false;    ///< include buffers (running_mean, ...)
  /// Use the parameters' gradients instead of their values (buffers have none; combining
  /// grads with buffers is an error).
  bool grads = false;
  Kind kind = Kind::All;
  bool trainable_only = false;  ///< only parameters with requires_grad
  /// Name patterns: a glob (`*` and `?`, e.g. "encoder.*.weight") or, prefixed by "re:", an
  /// ECMAScript regex matched against the whole name. Empty `include` means everything.
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  MissingGrad missing_grad = MissingGrad::Error;
};

/// Whose spelling the adapter's error messages use for option values, unsupported dtypes and
/// tensor layouts (see NOTE: [spelling] in src/torch/spelling.h).
enum class Spelling {
  Cpp,     ///< as C++ code writes them: `missing_grad = ZeroFill`, `ComplexFloat`, `Sparse`
  Python,  ///< as Python code writes them: `missing_grad='zero'`, `complex64`, `torch.sparse_coo`
};

/// One tensor of a module as a module walk finds it (see Selection for the order).
struct NamedTensor {
  std::string name;        ///< dotted path, e.g. "encoder.0.weight"
  at::Tensor tensor;       ///< the parameter or buffer itself (never its gradient)
  bool is_buffer = false;  ///< a buffer (running_mean, ...) rather than a parameter
};

/// Options of the adapter's plans.
struct Options {
  /// Flat dtype; unset: the common dtype of the tensors.
  std::optional<at::ScalarType> dtype;
  /// Segment alignment in bytes (0: none). 16 for vector loads, 128 or 256 for collectives.
  std::int64_t align_bytes = 0;
  /// CPU threads (0: OpenMP's default).
  int num_threads = 0;
  /// Streaming stores on the CPU (see flatgather::CpuStreaming); Auto is right for almost
  /// everyone.
  CpuStreaming cpu_streaming = CpuStreaming::Auto;
  /// Task size and schedule on the CPU (see flatgather::CpuTuning); for benchmarks and tests.
  CpuTuning cpu_tuning = {};
  /// Before every call, compare each tensor's data pointer, shape, strides, dtype and device
  /// with the plan's, rebinding gradients that were reallocated and throwing for anything
  /// else. Costs O(number of tensors) host time per call (see docs/perf.md); turn off in hot
  /// loops whose tensors are known not to move.
  bool check_tensors = true;
  /// Spelling of the plan's error messages; the Python operators set Spelling::Python.
  Spelling spelling = Spelling::Cpp;
};

/// A multiplier for gather, scatter and scatter_add: a number, or a one-element float32 tensor
/// on the plan's device read by the call when it runs (no host sync): `1 / loss_scale`,
/// `-lr * clip_coef`.
struct Factor {
  double value = 1.0;
  at::Tensor tensor;  ///< used instead of `value` when defined

  Factor() = default;
  Factor(double v) : value(v) {}                  // NOLINT(google-explicit-constructor)
  Factor(at::Tensor t) : tensor(std::move(t)) {}  // NOLINT(google-explicit-constructor)
};

/// What Plan::gather computes in the same pass (NOTE: [gather statistics] in src/stats.h).
///
///   StatsOptions o; o.scale = inv_scale; o.check_finite = true; o.max_norm = 1.0;
struct StatsOptions {
  Factor scale;                    ///< written values are cast(source * scale)
  bool norm = false;               ///< L2 norm of the written values
  bool tensor_norms = false;       ///< one L2 norm per segment (names() order)
  bool check_finite = false;       ///< found_inf: 1.0 when any source value is NaN or inf
  std::optional<double> max_norm;  ///< clip_coef = min(1, max_norm / (norm + 1e-6))
};

/// Results of a gather with statistics: float32 tensors on the plan's device, written on its
/// current stream (nothing waits for them); undefined when not asked for.
struct GatherStats {
  at::Tensor norm;          ///< 0-dim
  at::Tensor tensor_norms;  ///< 1-D, one per segment
  at::Tensor found_inf;     ///< 0-dim, 1.0 or 0.0 (GradScaler's convention)
  at::Tensor clip_coef;     ///< 0-dim
};

/// A plan over LibTorch tensors. Keeps every tensor (and, for gradients, every parameter)
/// alive, so it stays valid after its module is destroyed.
///
///   auto plan = flatgather::torch::Plan::from_module(model, {});
///   at::Tensor flat = plan.gather();   // == torch::cat of p.reshape(-1)
///   plan.scatter(flat * 0.5);          // copies back into the parameters' own storage
class Plan {
 public:
  /// A plan over `tensors`, named `names[i]` (default "tensor[i]").
  static Plan from_tensors(const std::vector<at::Tensor>& tensors,
                           std::vector<std::string> names = {}, const Options& options = {});
  /// A plan over a module's selected parameters, buffers or gradients.
  static Plan from_module(const ::torch::nn::Module& module, const Selection& selection = {},
                          const Options& options = {});
  /// A plan over the selected tensors of a module the caller walked itself (a Python module,
  /// say): `named` lists every parameter and buffer under every path, in the order described
  /// at Selection. `from_module(m, s, o)` is `from_named(<the walk of m>, s, o)`.
  ///
  ///   auto plan = Plan::from_named({{"fc.weight", w}, {"fc.bias", b}}, selection);
  static Plan from_named(const std::vector<NamedTensor>& named, const Selection& selection = {},
                         const Options& options = {});

  Plan();
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  const Layout& layout() const;
  /// The flat dtype as a LibTorch scalar type.
  at::ScalarType dtype() const;
  at::Device device() const;
  std::int64_t numel() const;
  /// Names of the segments in flat order (aliases not repeated).
  std::vector<std::string> names() const;
  /// The manifest (see Layout::to_json).
  std::string manifest(int indent = 2) const;
  /// Throws flatgather::Error naming the first difference from a manifest saved earlier.
  void check_manifest(const std::string& json) const;

  /// A new flat tensor holding every tensor (LibTorch's allocator, current stream).
  at::Tensor gather() const;
  /// Gathers into `out`: 1-D, contiguous, numel() elements of dtype() on device(), not
  /// overlapping any source.
  void gather(const at::Tensor& out) const;
  /// Copies `flat` back into the tensors' own storage (never rebinds them).
  void scatter(const at::Tensor& flat) const;
  /// `t += alpha * segment` for every tensor.
  void scatter_add(const at::Tensor& flat, double alpha = 1.0) const;
  /// scatter_add with alpha a number or a one-element float32 tensor on the plan's device.
  void scatter_add(const at::Tensor& flat, const Factor& alpha) const;
  /// Writes `scale * flat` back into the tensors (float32 maths, float64 when either side is).
  void scatter(const at::Tensor& flat, const Factor& scale) const;
  /// Gathers into `out` (as gather(out)) and computes `options`' statistics in the same pass,
  /// deterministically (the same bits on every call).
  ///
  ///   auto stats = plan.gather(flat, {inv_scale, true, false, true, 1.0});
  GatherStats gather(const at::Tensor& out, const StatsOptions& options) const;
  /// Views into `flat`, one per segment, each shaped like its tensor. Requires the flat
  /// dtype to equal every tensor's dtype, or to be uint8 (a byte buffer: views of each
  /// tensor's own dtype).
  std::vector<at::Tensor> views(const at::Tensor& flat) const;
  /// An uninitialized flat tensor of the right dtype, length and device.
  at::Tensor empty_flat() const;

  /// The underlying core plan.
  const flatgather::Plan& core() const;
  /// The tensors the plan reads (gradients as of the last call when built from grads).
  std::vector<at::Tensor> tensors() const;

 private:
  struct State;
  // `params` non-empty: a plan over their gradients (`tensors` may hold undefined ones).
  static Plan make(std::vector<TensorRef> refs, std::vector<std::string> names,
                   std::vector<at::Tensor> tensors, std::vector<at::Tensor> params,
                   MissingGrad missing_grad, const Options& options);
  // For src/torch/stats.cpp: checks `flat` for `op`, rebinds moved tensors and returns the
  // stream to run on; after_write bumps the written tensors' version counters.
  cudaStream_t prepare_call(const at::Tensor& flat, const char* op) const;
  void after_write() const;
  std::shared_ptr<State> state_;
};

/// One-off gather: `torch::cat` of every `t.reshape(-1)` (cast to `options.dtype`).
at::Tensor gather(const std::vector<at::Tensor>& tensors, const Options& options = {});
/// One-off scatter: copies `flat` into `tensors` (the inverse of gather).
void scatter(const at::Tensor& flat, const std::vector<at::Tensor>& tensors,
             const Options& options = {});

/// flatgather dtype of a LibTorch scalar type; throws for unsupported types.
DType to_dtype(at::ScalarType t);
at::ScalarType to_scalar_type(DType t);

}  // namespace torch
}  // namespace flatgather

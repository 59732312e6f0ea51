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
  Applies (*applies)(Op op, Dev dev, const Suite& suite);
  std::unique_ptr<Method> (*make)(Op op, Workload& w, const Suite& suite);
};

/// Every method, ours first and the roofline last: the order benchmarks run in.
const std::vector<MethodSpec>& method_table();

/// A method that is left out, and why.
struct Unavailable {
  std::string method;
  std::string reason;
};

/// The methods run for (op, device, suite), in table order. Those that cannot run here are
/// appended to `unavailable` (when given).
std::vector<const MethodSpec*> methods_for(Op op, Dev dev, const Suite& suite,
                                           std::vector<Unavailable>* unavailable = nullptr);

}  // namespace fgbench

// The reference check of flatgather-bench (NOTE: [honest timing] in timing.cpp).
#include "check.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "cuda_peers.h"

namespace fgbench {
namespace {

void poison(at::Tensor t) {
  if (at::isFloatingType(t.scalar_type())) {
    t.fill_(std::nan(""));
  } else if (t.scalar_type() == at::kBool) {
    t.fill_(true);
  } else if (t.scalar_type() == at::kByte) {  // -123 would not fit
    t.fill_(0xA5);
  } else {
    t.fill_(-123);
  }
}

void sync(Dev dev) {
  if (dev == Dev::CUDA) cuda::synchronize();
}

std::string describe_mismatch(const at::Tensor& got, const at::Tensor& want,
                              const std::string& what) {
  std::ostringstream os;
  os << "wrong result: " << what << " differs from LibTorch's reference";
  if (got.sizes() == want.sizes() && at::isFloatingType(want.scalar_type())) {
    const at::Tensor diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs();
    os << " (max |diff| " << diff.nan_to_num(INFINITY).max().item<double>() << ", "
       << (got.isnan().sum().item<std::int64_t>()) << " NaN left by the poisoned fill)";
  }
  return os.str();
}

// The flat buffer a gather writes: every tensor times `scale` (in float32, float64 when
// either side is float64; NOTE: [gather statistics]), cast to the flat dtype, with the
// suite's padding between tensors (cat_parts).
at::Tensor gathered(const Workload& w, const Suite& suite, const std::vector<at::Tensor>& tensors,
                    at::ScalarType flat_type, double scale) {
  std::vector<at::Tensor> parts = cat_parts(w, suite, tensors);
  for (at::Tensor& part : parts) {
    if (scale != 1.0) {
      const bool wide = part.scalar_type() == at::kDouble || flat_type == at::kDouble;
      part = part.to(wide ? at::kDouble : at::kFloat) * scale;
    }
    part = part.to(flat_type);  // a cast when the suite casts
  }
  return at::cat(parts, 0);
}

// "" when `got` (a 0-dim tensor) is within `tolerance` relative of `want`.
std::string compare_scalar(const at::Tensor& got, double want, double tolerance,
                           const std::string& what) {
  if (!got.defined() || got.numel() != 1) return "wrong result: no " + what;
  const double value = got.to(at::kDouble).item<double>();
  if (std::abs(value - want) <= tolerance * std::abs(want)) return "";
  std::ostringstream os;
  os.precision(10);
  os << "wrong result: " << what << " " << value << " differs from the float64 reference " << want
     << " by more than " << tolerance << " relative";
  return os.str();
}

// gather_norm and unscale: the flat buffer exactly, then the statistics.
std::string check_stats(Method& m, BenchOp op, Workload& w, const Suite& suite) {
  BufferSet& s = w.sets[0];
  const double scale = op == BenchOp::Unscale ? kUnscaleFactor : 1.0;
  // Before the run: the unscale peer works in place.
  const at::Tensor want = gathered(w, suite, s.tensors, s.flat.scalar_type(), scale);
  bool finite = true;
  for (const at::Tensor& t : s.tensors) finite = finite && at::isfinite(t).all().item<bool>();
  poison(s.flat);
  m.run(0);
  sync(w.dev);
  if (!at::equal(s.flat, want)) return describe_mismatch(s.flat, want, "the flat buffer");
  const StatsResult got = m.stats();
  if (op == BenchOp::Unscale) {
    return compare_scalar(got.found_inf, finite ? 0.0 : 1.0, 0.0, "found_inf");
  }
  // The norm of the values written, in float64.
  const double norm = at::linalg_vector_norm(want.to(at::kDouble), 2).item<double>();
  std::string wrong = compare_scalar(got.norm, norm, got.tolerance, "the norm");
  if (!wrong.empty()) return wrong;
  const double coef = std::min(1.0, kMaxNorm / (norm + 1e-6));
  return compare_scalar(got.clip_coef, coef, got.tolerance, "the clip coefficient");
}

}  // namespace

double peer_norm_tolerance(const Suite& suite) {
  // Explicit significand bits (the unit in the last place is 2^-bits relative).
  auto bits_of = [](flatgather::DType d) {
    switch (d) {
      case flatgather::DType::BFloat16: return 7;
      case flatgather::DType::Float16: return 10;
      case flatgather::DType::Float32: return 23;
      default: return 52;
    }
  };
  int bits = bits_of(suite.flat_dtype);
  for (const TensorSpec& t : suite.tensors) bits = std::min(bits, bits_of(t.dtype));
  return std::max(1e-2, 4 * std::ldexp(1.0, -bits));
}

// The bytes of `t` in element order.
at::Tensor as_bytes(const at::Tensor& t) {
  return t.contiguous().reshape(-1).view(at::kByte);
}

std::string check(Method& m, BenchOp op, Workload& w, const Suite& suite) {
  if (std::optional<std::string> own = m.self_check()) return *own;
  if (is_stats_op(op)) return check_stats(m, op, w, suite);
  BufferSet& s = w.sets[0];
  const at::ScalarType flat_type = s.flat.scalar_type();
  if (op == BenchOp::Gather) {
    const at::Tensor want = gathered(w, suite, s.tensors, flat_type, 1.0);
    poison(s.flat);
    m.run(0);
    sync(w.dev);
    return at::equal(s.flat, want) ? "" : describe_mismatch(s.flat, want, "the flat buffer");
  }
  const std::vector<at::Tensor> views = flat_views(w, suite, s.flat);
  std::vector<at::Tensor> before;
  if (op == BenchOp::ScatterAdd) {
    for (const at::Tensor& t : s.tensors) before.push_back(t.clone());
  } else {
    for (at::Tensor& t : s.tensors) poison(t);
  }
  m.run(0);
  sync(w.dev);
  for (std::size_t i = 0; i < s.tensors.size(); ++i) {
    const at::Tensor& t = s.tensors[i];
    at::Tensor want;
    if (op == BenchOp::Scatter) {
      want = views[i].to(t.scalar_type());
    } else {
      const bool wide = t.scalar_type() == at::kDouble || flat_type == at::kDouble;
      const at::ScalarType compute = wide ? at::kDouble : at::kFloat;
      want = (before[i].to(compute) + views[i].to(compute) * kAlpha).to(t.scalar_type());
    }
    // A scatter copies bits: compared as bytes, so that a NaN the source holds (a byte suite's
    // flat buffer read as floats, before any gather wrote it) compares equal to itself.
    const bool same =
        op == BenchOp::Scatter ? at::equal(as_bytes(t), as_bytes(want)) : at::equal(t, want);
    if (!same) {
      return describe_mismatch(t, want, "tensor '" + suite.tensors[i].name + "'");
    }
  }
  return "";
}

}  // namespace fgbench

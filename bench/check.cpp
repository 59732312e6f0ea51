// The reference check of flatgather-bench (NOTE: [honest timing] in timing.cpp).
#include "check.h"

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

}  // namespace

std::string check(Method& m, Op op, Workload& w, const Suite& suite) {
  if (std::optional<std::string> own = m.self_check()) return *own;
  BufferSet& s = w.sets[0];
  const at::ScalarType flat_type = s.flat.scalar_type();
  if (op == Op::Gather) {
    std::vector<at::Tensor> parts = cat_parts(w, suite, s.tensors);
    for (at::Tensor& p : parts) p = p.to(flat_type);  // a cast when the suite casts
    const at::Tensor want = at::cat(parts, 0);
    poison(s.flat);
    m.run(0);
    sync(w.dev);
    return at::equal(s.flat, want) ? "" : describe_mismatch(s.flat, want, "the flat buffer");
  }
  const std::vector<at::Tensor> views = flat_views(w, suite, s.flat);
  std::vector<at::Tensor> before;
  if (op == Op::ScatterAdd) {
    for (const at::Tensor& t : s.tensors) before.push_back(t.clone());
  } else {
    for (at::Tensor& t : s.tensors) poison(t);
  }
  m.run(0);
  sync(w.dev);
  for (std::size_t i = 0; i < s.tensors.size(); ++i) {
    const at::Tensor& t = s.tensors[i];
    at::Tensor want;
    if (op == Op::Scatter) {
      want = views[i].to(t.scalar_type());
    } else {
      const bool wide = t.scalar_type() == at::kDouble || flat_type == at::kDouble;
      const at::ScalarType compute = wide ? at::kDouble : at::kFloat;
      want = (before[i].to(compute) + views[i].to(compute) * kAlpha).to(t.scalar_type());
    }
    if (!at::equal(t, want)) {
      return describe_mismatch(t, want, "tensor '" + suite.tensors[i].name + "'");
    }
  }
  return "";
}

}  // namespace fgbench

// Property-based test: random tensor lists (counts, shapes with 0 and 1 sizes and 0-d,
// dtypes, strides from permutations, steps and offsets into larger storages, ties, overlaps,
// stride-0 views), random flat dtypes, align_bytes and thread counts. Each case checks
//   gather == torch::cat of reshape(-1).to(flat dtype), placed at independently computed
//             offsets with zero padding, bit for bit, into a poisoned buffer;
//   scatter writes exactly the planned elements (every byte around them is kept), cast as
//             `.to()` casts, and gather -> scatter -> gather round trips;
//   a plan whose tensors share memory refuses scatter and writes nothing.
// Bounded by time: FLATGATHER_FUZZ_SECONDS (default 40; 0 runs one case). Case k uses seed
// FLATGATHER_FUZZ_SEED + k (default base 1); a failure prints the case's seed and the case,
// and FLATGATHER_FUZZ_SEED=<that seed> FLATGATHER_FUZZ_SECONDS=0 replays it alone.
// With flatgather::cuda_available() every case also runs on CUDA tensors. Every storage and
// flat buffer sits inside canaries (NOTE: [canaries] in tests/canaries.h), checked after each
// call. A second test runs scatter_add for every floating (tensor, flat) dtype pair, with
// specials in every storage and update, on each device.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include "canaries.h"
#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;

const at::ScalarType kFloats[] = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};
const at::ScalarType kOthers[] = {at::kChar, at::kByte, at::kShort, at::kInt, at::kLong, at::kBool};

// One tensor of a case: a view into storage `storage` (a 1-D tensor of its dtype).
struct Spec {
  std::size_t storage = 0;
  std::vector<std::int64_t> sizes, strides;
  std::int64_t offset = 0;
  std::string note;  // "dup of 2", "overlaps 1", "expanded"
};

struct Case {
  std::uint64_t seed = 0;
  std::vector<at::Tensor> storages;  // on the CPU
  std::vector<Spec> specs;
  std::optional<at::ScalarType> flat_dtype;
  std::int64_t align = 0;
  int threads = 0;
  bool check_tensors = true;
  bool shares_memory = false;  // a deliberate overlap or stride-0 view: scatter must refuse
  bool specials = false;       // NaN, infinities, -0.0, subnormals in every storage and update

  std::string describe() const {
    std::ostringstream os;
    os << "case seed " << seed << ": flat dtype "
       << (flat_dtype ? c10::toString(*flat_dtype) : "(common)") << ", align_bytes " << align
       << ", threads " << threads << ", check_tensors " << check_tensors << "\n";
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const Spec& s = specs[i];
      os << "  t" << i << ": " << storages[s.storage].scalar_type() << " sizes "
         << at::IntArrayRef(s.sizes) << " strides " << at::IntArrayRef(s.strides) << " offset "
         << s.offset << " in storage " << s.storage << " of " << storages[s.storage].numel()
         << (s.note.empty() ? "" : " (" + s.note + ")") << "\n";
    }
    return os.str();
  }
};

std::int64_t numel_of(const std::vector<std::int64_t>& sizes) {
  std::int64_t n = 1;
  for (auto s : sizes) n *= s;
  return n;
}

at::ScalarType same_size_int(at::ScalarType t) {
  switch (c10::elementSize(t)) {
    case 1: return at::kByte;
    case 2: return at::kShort;
    case 4: return at::kInt;
    default: return at::kLong;
  }
}

/// The case of `seed`; with `pair`, every tensor is of pair->first, the flat buffer of
/// pair->second, and every storage and flat update holds specials.
Case draw(std::uint64_t seed,
          std::optional<std::pair<at::ScalarType, at::ScalarType>> pair = std::nullopt) {
  std::mt19937_64 rng(seed);
  torch::manual_seed(seed);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {  // inclusive
    return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
  };
  Case c;
  c.seed = seed;
  const int r = static_cast<int>(rng() % 10);
  const int count = r < 6 ? pick(1, 6) : r < 9 ? pick(7, 24) : pick(25, 120);

  // dtypes: mixed floats with an explicit flat dtype, or one dtype throughout.
  std::vector<at::ScalarType> dtypes(count);
  const int family = static_cast<int>(rng() % 20);
  if (family < 11) {
    for (auto& d : dtypes) d = kFloats[rng() % 4];
    c.flat_dtype = kFloats[rng() % 4];
  } else {
    const at::ScalarType d = family < 15 ? kFloats[rng() % 4] : kOthers[rng() % 6];
    for (auto& x : dtypes) x = d;
    if (rng() % 2) c.flat_dtype = d;
  }
  if (pair) {
    for (auto& d : dtypes) d = pair->first;
    c.flat_dtype = pair->second;
    c.specials = true;
  }
  const at::ScalarType flat = c.flat_dtype.value_or(dtypes[0]);
  const std::int64_t fsize = static_cast<std::int64_t>(c10::elementSize(flat));
  static const std::int64_t kAligns[] = {0, 0, 0, 1, 2, 4, 8, 16, 16, 64, 128, 256};
  do {
    c.align = kAligns[rng() % std::size(kAligns)];
  } while (c.align > 1 && c.align < fsize);
  c.threads = static_cast<int>(rng() % 4);
  c.check_tensors = rng() % 10 < 7;

  bool big_used = false;
  const bool may_share = rng() % 6 == 0;  // ties are always allowed; overlaps in 1 case of 6
  for (int i = 0; i < count; ++i) {
    Spec s;
    const at::ScalarType dtype = dtypes[i];
    // A tie (the same view again) or a view overlapping an earlier tensor's first element.
    if (i > 0 && rng() % 14 == 0) {
      const std::size_t j = rng() % c.specs.size();
      if (c.storages[c.specs[j].storage].scalar_type() == dtype) {
        s = c.specs[j];
        s.note = "dup of t" + std::to_string(j);
        c.specs.push_back(s);
        continue;
      }
    }
    if (may_share && i > 0 && rng() % 4 == 0) {
      const std::size_t j = rng() % c.specs.size();
      const Spec& e = c.specs[j];
      const std::int64_t n = numel_of(e.sizes);
      if (c.storages[e.storage].scalar_type() == dtype && n > 0) {
        s.storage = e.storage;
        s.offset = e.offset;
        const std::int64_t k = pick(1, std::min<std::int64_t>(n, 9));
        s.sizes = {1, k};
        s.strides = {k, 1};
        // Keep it inside the storage: k contiguous elements from the first one.
        if (s.offset + k <= c.storages[e.storage].numel()) {
          s.note = "overlaps t" + std::to_string(j);
          c.shares_memory = true;
          c.specs.push_back(s);
          continue;
        }
        s = Spec();
      }
    }

    // Shape.
    const int ndim = rng() % 10 == 0 ? 0 : static_cast<int>(pick(1, 4));
    for (int d = 0; d < ndim; ++d) {
      const int kind = static_cast<int>(rng() % 20);
      s.sizes.push_back(kind == 0 ? 0 : kind < 6 ? 1 : pick(2, 9));
    }
    if (!big_used && ndim > 0 && rng() % 12 == 0) {  // large enough for several CPU tasks
      big_used = true;
      for (auto& size : s.sizes) size = 1;
      s.sizes[rng() % ndim] = pick(1 << 15, 1 << 17);
      s.sizes[rng() % ndim] *= pick(1, 3);
    }
    // Strides: a random dim order (outermost..innermost), steps, gaps; any stride on size-1
    // dims; sometimes one stride-0 (expanded) dim.
    std::vector<int> order(ndim);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    s.strides.assign(ndim, 0);
    std::int64_t running = 1;
    for (int k = ndim - 1; k >= 0; --k) {
      const int d = order[k];
      const std::int64_t step = rng() % 10 < 7 ? 1 : pick(2, 3);
      s.strides[d] = running * step;
      running =
          s.strides[d] * std::max<std::int64_t>(s.sizes[d], 1) + (rng() % 8 == 0 ? pick(1, 3) : 0);
      if (s.sizes[d] == 1 && rng() % 3 == 0) s.strides[d] = pick(0, 50);
    }
    if (may_share && ndim > 0 && rng() % 4 == 0) {
      const int d = static_cast<int>(rng() % ndim);
      if (s.sizes[d] > 1 && numel_of(s.sizes) > 0) {  // an empty tensor shares nothing
        s.strides[d] = 0;
        s.note = "expanded";
        c.shares_memory = true;
      }
    }
    s.offset = rng() % 2 ? 0 : pick(1, 17);
    std::int64_t reach = 0;
    for (int d = 0; d < ndim; ++d)
      reach += (std::max<std::int64_t>(s.sizes[d], 1) - 1) * s.strides[d];
    const std::int64_t len = s.offset + reach + 1 + (rng() % 4 == 0 ? pick(1, 9) : 0);
    s.storage = c.storages.size();
    c.storages.push_back(fgtest::random_with_specials(rng, len, dtype, c.specials));
    c.specs.push_back(s);
  }
  return c;
}

// as_strided's offset counts from the start of the allocation: a storage inside canaries
// starts after the head guard.
at::Tensor view_of(const at::Tensor& storage, const Spec& s) {
  return storage.as_strided(s.sizes, s.strides, storage.storage_offset() + s.offset);
}

std::vector<at::Tensor> views_of(const std::vector<at::Tensor>& storages,
                                 const std::vector<Spec>& specs) {
  std::vector<at::Tensor> out;
  for (const Spec& s : specs) out.push_back(view_of(storages[s.storage], s));
  return out;
}

// The flat buffer by definition: offsets computed here, segments from torch's reshape/to/cat.
struct Reference {
  at::Tensor flat;
  std::vector<std::int64_t> offsets;  // per tensor (a tie: its first occurrence's)
  std::vector<bool> first;            // false for a tie of an earlier tensor
};

Reference reference(const std::vector<at::Tensor>& views, at::ScalarType flat, std::int64_t align) {
  const std::int64_t fsize = static_cast<std::int64_t>(c10::elementSize(flat));
  const std::int64_t step = align > fsize ? align / fsize : 1;
  auto round_up = [&](std::int64_t x) { return (x + step - 1) / step * step; };
  Reference r;
  std::int64_t cursor = 0;
  for (std::size_t i = 0; i < views.size(); ++i) {
    const at::Tensor& v = views[i];
    std::optional<std::size_t> tie;
    for (std::size_t j = 0; j < i && v.numel() > 0 && !tie; ++j) {
      const at::Tensor& u = views[j];
      if (r.first[j] && u.numel() > 0 && u.data_ptr() == v.data_ptr() && u.sizes() == v.sizes() &&
          u.strides() == v.strides() && u.scalar_type() == v.scalar_type()) {
        tie = j;
      }
    }
    r.first.push_back(!tie);
    if (tie) {
      r.offsets.push_back(r.offsets[*tie]);
      continue;
    }
    r.offsets.push_back(round_up(cursor));
    cursor = r.offsets.back() + v.numel();
  }
  std::vector<at::Tensor> pieces;
  std::int64_t end = 0;
  for (std::size_t i = 0; i < views.size(); ++i) {
    if (!r.first[i]) continue;
    if (r.offsets[i] > end) pieces.push_back(at::zeros({r.offsets[i] - end}, flat));
    pieces.push_back(views[i].reshape(-1).to(flat));
    end = r.offsets[i] + views[i].numel();
  }
  if (round_up(cursor) > end) pieces.push_back(at::zeros({round_up(cursor) - end}, flat));
  r.flat = pieces.empty() ? at::empty({0}, flat) : at::cat(pieces);
  return r;
}

std::vector<at::Tensor> clones(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.clone());
  return out;
}

// Snapshots on the CPU. Always copies: `t.cpu()` of a CPU tensor is the tensor itself, and a
// "before" that aliases the storages would follow every later write (and compare equal to it).
std::vector<at::Tensor> to_cpu(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true));
  return out;
}

// Storages as they must be after scattering `flat` (CPU) over `before` (CPU).
std::vector<at::Tensor> expected_after_scatter(const Case& c, const std::vector<at::Tensor>& before,
                                               const Reference& ref, const at::Tensor& flat) {
  std::vector<at::Tensor> out = clones(before);
  const std::vector<at::Tensor> views = views_of(out, c.specs);
  for (std::size_t i = 0; i < views.size(); ++i) {
    if (views[i].numel() == 0) continue;
    views[i].copy_(flat.narrow(0, ref.offsets[i], views[i].numel())
                       .view(views[i].sizes())
                       .to(views[i].scalar_type()));
  }
  return out;
}

// Storages as they must be after scatter_add(flat, alpha) over `before`: each tensor (a tie
// once) becomes LibTorch's `t + alpha * segment` rounded once (fgtest::reference_add_scaled).
std::vector<at::Tensor> expected_after_scatter_add(const Case& c,
                                                   const std::vector<at::Tensor>& before,
                                                   const Reference& ref, const at::Tensor& flat,
                                                   double alpha) {
  std::vector<at::Tensor> out = clones(before);
  const std::vector<at::Tensor> views = views_of(out, c.specs);
  for (std::size_t i = 0; i < views.size(); ++i) {
    if (views[i].numel() == 0 || !ref.first[i]) continue;
    const at::Tensor v = flat.narrow(0, ref.offsets[i], views[i].numel());
    views[i].copy_(fgtest::reference_add_scaled(views[i], v, alpha));
  }
  return out;
}

// True when two elements of the case's tensors (ties counted once) share a storage element:
// computed from the specs alone, element by element, not with the library's overlap test.
bool really_overlap(const Case& c, const Reference& ref) {
  std::vector<std::vector<at::Tensor>> offsets(c.storages.size());
  for (std::size_t i = 0; i < c.specs.size(); ++i) {
    const Spec& s = c.specs[i];
    if (!ref.first[i] || numel_of(s.sizes) == 0) continue;
    const at::Tensor index = at::arange(c.storages[s.storage].numel(), at::kLong);
    offsets[s.storage].push_back(index.as_strided(s.sizes, s.strides, s.offset).reshape(-1));
  }
  for (const auto& list : offsets) {
    if (list.empty()) continue;
    const at::Tensor all = at::cat(list);
    if (std::get<0>(at::_unique(all)).numel() < all.numel()) return true;
  }
  return false;
}

void poison(const std::vector<at::Tensor>& storages, const std::vector<Spec>& specs) {
  for (const Spec& s : specs) {
    const at::Tensor& st = storages[s.storage];
    view_of(st.view(same_size_int(st.scalar_type())), s).fill_(0x5A);
  }
}

#define FUZZ_CHECK(cond, what)                                        \
  do {                                                                \
    const ::testing::AssertionResult fuzz_ok_ = (cond);               \
    if (!static_cast<bool>(fuzz_ok_)) {                               \
      std::ostringstream fuzz_os_;                                    \
      fuzz_os_ << what << ": " << #cond << " " << fuzz_ok_.message(); \
      return fuzz_os_.str();                                          \
    }                                                                 \
  } while (false)

::testing::AssertionResult truth(bool b) {
  return b ? ::testing::AssertionSuccess() : ::testing::AssertionFailure();
}

::testing::AssertionResult all_bits_equal(const std::vector<at::Tensor>& a,
                                          const std::vector<at::Tensor>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto r = bits_equal(a[i], b[i]);
    if (!r) return r << " in storage " << i;
  }
  return ::testing::AssertionSuccess();
}

// Runs one case on `device`; returns "" or what failed.
std::string run_case(const Case& c, const at::Device& device) {
  fgtest::Canaries canaries(c.seed);
  std::vector<at::Tensor> storages;
  for (std::size_t i = 0; i < c.storages.size(); ++i)
    storages.push_back(canaries.copy_of(c.storages[i], device, "storage " + std::to_string(i)));
  const std::vector<at::Tensor> views = views_of(storages, c.specs);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < views.size(); ++i) names.push_back("t" + std::to_string(i));
  fgt::Options options;
  options.dtype = c.flat_dtype;
  options.align_bytes = c.align;
  options.num_threads = c.threads;
  options.check_tensors = c.check_tensors;
  const at::ScalarType flat_dtype = c.flat_dtype.value_or(views[0].scalar_type());

  const fgt::Plan plan = fgt::Plan::from_tensors(views, names, options);
  const Reference ref = reference(views_of(c.storages, c.specs), flat_dtype, c.align);

  // Layout: offsets, lengths, shapes and aliases as computed independently.
  FUZZ_CHECK(truth(plan.numel() == ref.flat.numel()),
             "flat length " << plan.numel() << " vs " << ref.flat.numel());
  std::size_t segment = 0;
  for (std::size_t i = 0; i < views.size(); ++i) {
    const flatgather::Segment* seg = plan.layout().find(names[i]);
    FUZZ_CHECK(truth(seg != nullptr), "no segment for " << names[i]);
    FUZZ_CHECK(truth(seg->offset == ref.offsets[i] && seg->numel == views[i].numel() &&
                     at::IntArrayRef(seg->shape) == views[i].sizes()),
               names[i] << " segment at " << seg->offset << " (+" << seg->numel << ") vs "
                        << ref.offsets[i]);
    if (ref.first[i]) {
      FUZZ_CHECK(truth(&plan.layout().segments()[segment] == seg), names[i] << " out of order");
      ++segment;
    }
  }
  FUZZ_CHECK(truth(segment == plan.layout().segments().size()), "segment count");

  // Gather into a poisoned buffer, and into a new one.
  at::Tensor flat = canaries.copy_of(fgtest::poisoned(plan.numel(), flat_dtype), device, "flat");
  plan.gather(flat);
  FUZZ_CHECK(canaries.intact(), "canaries after gather");
  FUZZ_CHECK(bits_equal(flat.cpu(), ref.flat), "gather into a poisoned buffer");
  FUZZ_CHECK(bits_equal(plan.gather().cpu(), ref.flat), "gather()");

  const std::vector<at::Tensor> before = to_cpu(storages);
  if (!plan.core().writable()) {
    bool threw = false;
    try {
      plan.scatter(flat);
    } catch (const flatgather::Error& e) {
      threw = std::string(e.what()).find("scatter") != std::string::npos;
    }
    FUZZ_CHECK(truth(threw), "scatter on shared memory did not throw a scatter error");
    FUZZ_CHECK(all_bits_equal(to_cpu(storages), before), "a refused scatter wrote");
    FUZZ_CHECK(canaries.intact(), "canaries after a refused scatter");
    FUZZ_CHECK(truth(really_overlap(c, ref)), "scatter refused on tensors that do not overlap");
    return "";
  }
  FUZZ_CHECK(truth(!c.shares_memory && !really_overlap(c, ref)),
             "a plan over shared memory claims to be writable");

  // gather -> scatter: every planned element is written, nothing else is.
  poison(storages, c.specs);
  plan.scatter(flat);
  FUZZ_CHECK(all_bits_equal(to_cpu(storages), expected_after_scatter(c, before, ref, ref.flat)),
             "scatter of the gathered buffer");
  FUZZ_CHECK(canaries.intact(), "canaries after scatter");
  // A fresh random flat buffer: casts back to each tensor's dtype as `.to()` does.
  std::mt19937_64 rng(c.seed ^ 0x9E3779B97F4A7C15ull);
  const at::Tensor fresh = fgtest::random_with_specials(rng, plan.numel(), flat_dtype, c.specials);
  const std::vector<at::Tensor> mid = to_cpu(storages);
  poison(storages, c.specs);
  plan.scatter(canaries.copy_of(fresh, device, "fresh flat"));
  const std::vector<at::Tensor> after = to_cpu(storages);
  FUZZ_CHECK(all_bits_equal(after, expected_after_scatter(c, mid, ref, fresh)),
             "scatter of a random buffer");
  FUZZ_CHECK(canaries.intact(), "canaries after scatter of a random buffer");
  // ... and gather reads back what scatter wrote.
  const Reference again = reference(views_of(after, c.specs), flat_dtype, c.align);
  FUZZ_CHECK(bits_equal(plan.gather().cpu(), again.flat), "gather after scatter");

  // scatter_add of a random buffer (specials included) with a random alpha, when every tensor
  // and the flat buffer are floating: each tensor is `t + alpha * v` rounded once; the
  // storage around the views (offsets, gaps, tails: random values) is compared too.
  bool floats = at::isFloatingType(flat_dtype);
  for (const at::Tensor& v : views) floats = floats && at::isFloatingType(v.scalar_type());
  if (floats) {
    static const double kAlphas[] = {1.0, -1.0, 0.0, 0.5, -0.37, 1e-3, 3.0e4, 1.0 / 3.0};
    const double alpha = rng() % 3 == 0
                             ? kAlphas[rng() % std::size(kAlphas)]
                             : std::ldexp(static_cast<double>(rng() % 2001) - 1000.0, -9);
    const at::Tensor update =
        fgtest::random_with_specials(rng, plan.numel(), flat_dtype, c.specials);
    plan.scatter_add(canaries.copy_of(update, device, "update flat"), alpha);
    FUZZ_CHECK(
        all_bits_equal(to_cpu(storages), expected_after_scatter_add(c, after, ref, update, alpha)),
        "scatter_add with alpha " << alpha);
    FUZZ_CHECK(canaries.intact(), "canaries after scatter_add");
  }
  return "";
}

// Runs `c` on the CPU and, when `cuda`, on CUDA tensors; "" or the first failure, with the
// device and the case.
std::string run_on_each_device(const Case& c, bool cuda) {
  for (const at::Device device : {at::Device(at::kCPU), at::Device(at::kCUDA)}) {
    if (device.is_cuda() && !cuda) continue;
    std::string failure;
    try {
      failure = run_case(c, device);
    } catch (const std::exception& e) {
      failure = std::string("unexpected exception: ") + e.what();
    }
    if (!failure.empty()) {
      std::ostringstream os;
      os << "[fuzz] failed on " << device << "\n" << c.describe() << failure << "\n";
      return os.str();
    }
  }
  return "";
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

TEST(Fuzz, GatherEqualsCatAndScatterRoundTrips) {
  const std::uint64_t base = env_u64("FLATGATHER_FUZZ_SEED", 1);
  const double budget = std::strtod(
      std::getenv("FLATGATHER_FUZZ_SECONDS") ? std::getenv("FLATGATHER_FUZZ_SECONDS") : "40",
      nullptr);
  const bool cuda = flatgather::cuda_available() && torch::cuda::is_available();
  if (!cuda && fgtest::gpu_required()) {
    ADD_FAILURE() << "FLATGATHER_REQUIRE_GPU=1 but the fuzz test sees no CUDA device";
  }
  std::cout << "[fuzz] FLATGATHER_FUZZ_SEED=" << base << " FLATGATHER_FUZZ_SECONDS=" << budget
            << (cuda ? " (cpu and cuda)" : " (cpu)")
            << ", CPU executor: " << fgt::Plan::from_tensors({at::ones({1})}).core().describe()
            << std::endl;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::uint64_t cases = 0, refused = 0;
  do {
    const Case c = draw(base + cases);
    const std::string failure = run_on_each_device(c, cuda);
    if (!failure.empty()) {
      ADD_FAILURE() << failure << "replay with FLATGATHER_FUZZ_SEED=" << c.seed
                    << " FLATGATHER_FUZZ_SECONDS=0";
      return;
    }
    refused += c.shares_memory;
    ++cases;
  } while (elapsed() < budget);
  std::cout << "[fuzz] " << cases << " cases (" << refused << " with shared memory) in "
            << elapsed() << " s, seeds " << base << ".." << base + cases - 1 << std::endl;
}

// scatter_add for every floating (tensor dtype, flat dtype) pair, on the CPU and on CUDA:
// random cases whose storages and updates all hold NaN, infinities, -0.0 and subnormals, with
// random alphas (negative ones included), against LibTorch's `t + alpha * v` rounded once
// (fgtest::reference_add_scaled); the storage around each view and the canaries around each
// storage and flat buffer are checked too. Fixed seeds, so it covers each pair every run.
TEST(Fuzz, ScatterAddEveryFloatPairWithSpecials) {
  const bool cuda = flatgather::cuda_available() && torch::cuda::is_available();
  if (!cuda && fgtest::gpu_required()) {
    ADD_FAILURE() << "FLATGATHER_REQUIRE_GPU=1 but the fuzz test sees no CUDA device";
  }
  constexpr int kCasesPerPair = 3;
  std::uint64_t seed = 1'000'000;
  for (at::ScalarType tensor_dtype : kFloats) {
    for (at::ScalarType flat_dtype : kFloats) {
      for (int k = 0; k < kCasesPerPair; ++k) {
        Case c = draw(seed++, std::pair{tensor_dtype, flat_dtype});
        while (c.shares_memory) c = draw(seed++, std::pair{tensor_dtype, flat_dtype});
        const std::string failure = run_on_each_device(c, cuda);
        if (!failure.empty()) {
          ADD_FAILURE() << failure << "(tensor dtype " << tensor_dtype << ", flat dtype "
                        << flat_dtype << ")";
          return;
        }
      }
    }
  }
}

}  // namespace

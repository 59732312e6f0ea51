// Every CPU loop choice gives the same bits (NOTE: [cpu isa dispatch] in src/cpu_executor.cpp):
// the AVX2+FMA loops with AVX512_BF16 rounding where the CPU has it, without it
// (FLATGATHER_CPU_ISA=avx2), and the baseline loops (FLATGATHER_CPU_ISA=baseline). The choice
// is made once per process, so the test runs one workload in its own process (the best this
// machine has) and again in a child process of the same binary per forced choice, and compares
// every output byte. The workload: gathers with every float cast, scatters into poisoned
// destinations, scatter_add with random alphas, over contiguous, transposed, channels_last and
// stepped tensors, special values included, each with and without streaming stores; and
// float32 <-> bfloat16 runs with every special value (NaNs, denormals, infinities, ties) at
// every lane of a 32-value vector, whose narrowing is also checked against LibTorch's .to().
// LibTorch checks the other loops too: ctest runs test_fuzz with FLATGATHER_CPU_ISA=baseline
// and =avx2.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "flatgather/torch.h"
#include "test_util.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using flatgather::CpuStreaming;

const at::ScalarType kFloats[] = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};

using Record = std::pair<std::string, std::string>;  // what, the bytes

std::string bytes_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

std::string bytes_of(const std::vector<at::Tensor>& ts) {
  std::string out;
  for (const auto& t : ts) out += bytes_of(t);
  return out;
}

// Tensors of `dtype` in the layouts that take different loop paths: contiguous (vectorized),
// transposed (cache blocks), channels_last, a stepped slice, and a small odd tail.
std::vector<at::Tensor> layouts(std::mt19937_64& rng, at::ScalarType dtype) {
  auto values = [&](std::vector<std::int64_t> sizes) {
    std::int64_t n = 1;
    for (auto s : sizes) n *= s;
    return fgtest::random_with_specials(rng, n, dtype).view(sizes);
  };
  return {values({4099}), values({67, 45}).t(),
          values({6, 9, 5, 7}).contiguous(at::MemoryFormat::ChannelsLast),
          values({3001}).slice(0, 5, 3001, 3), values({13})};
}

// float32 values of 32-value vectors (the AVX-512 rounding's width), each holding one special
// value at one lane, for every special and lane, between ordinary random values: what the
// vector loops must hand to the scalar conversion, or round as it does.
at::Tensor specials_at_every_lane(std::mt19937_64& rng) {
  static const std::uint32_t kBits[] = {
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFFFFFFFFu, 0x7FBFFFFFu,  // NaNs
      0x00000001u, 0x80000001u, 0x007FFFFFu, 0x807FFFFFu, 0x00400000u,  // denormals
      0x00008000u, 0x00018000u, 0x007F8000u, 0x007FFFFEu,               // denormal ties
      0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u,               // infinities, zeros
      0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F8000u, 0x00800000u, 0x80800000u,  // largest, ties, smallest
      0x3F808000u, 0x3F818000u, 0x3F80FFFFu, 0x3F807FFFu};              // rounding ties
  const std::int64_t n = static_cast<std::int64_t>(std::size(kBits)) * 32 * 32 + 7;
  at::Tensor t = fgtest::random_with_specials(rng, n, at::kFloat);
  auto* p = reinterpret_cast<std::uint32_t*>(t.data_ptr<float>());
  std::int64_t at = 0;
  for (const std::uint32_t bits : kBits) {
    for (int lane = 0; lane < 32; ++lane, at += 32) p[at + lane] = bits;
  }
  return t;
}

// The float32 <-> bfloat16 runs of `values` (specials_at_every_lane) from element `shift` on:
// a float32 tensor gathered to bfloat16, scattered from a float32 flat buffer into a poisoned
// bfloat16 tensor, and added (alpha 0.37) into a bfloat16 tensor `before`.
struct Bfloat16Runs {
  at::Tensor source, gathered, scattered, before, added;
};

Bfloat16Runs bfloat16_runs(std::mt19937_64& rng, const at::Tensor& values, CpuStreaming streaming,
                           std::int64_t shift) {
  Bfloat16Runs r;
  r.source = values.narrow(0, shift, values.numel() - shift);
  fgt::Options o;
  o.num_threads = 2;
  o.cpu_streaming = streaming;
  o.dtype = at::kBFloat16;
  r.gathered = fgtest::gather_poisoned(fgt::Plan::from_tensors({r.source}, {}, o));
  o.dtype = at::kFloat;
  r.scattered = fgtest::poisoned_like(r.source.to(at::kBFloat16));
  fgt::Plan::from_tensors({r.scattered}, {}, o).scatter(r.source);
  r.before = fgtest::random_with_specials(rng, r.source.numel(), at::kBFloat16, true);
  // Zeros in every other vector, so that there t + alpha * v is the specials' own class
  // (denormal results too, which the vector loops must hand to add_scaled).
  for (std::int64_t at = 0; at < r.before.numel(); at += 64) {
    r.before.narrow(0, at, std::min<std::int64_t>(32, r.before.numel() - at)).zero_();
  }
  r.added = r.before.clone();
  fgt::Plan::from_tensors({r.added}, {}, o).scatter_add(r.source, 0.37);
  return r;
}

// Every output of the workload, in order, with what produced it. Runs under whichever loops
// this process selected; returns them and the plan's description first.
std::vector<Record> workload() {
  std::vector<Record> out;
  std::mt19937_64 rng(20240611);
  torch::manual_seed(20240611);
  static const double kAlphas[] = {1.0, -1.0, 0.37, 1e-3, 3.0e4, 1.0 / 3.0, -2.5e-5};
  for (const CpuStreaming streaming : {CpuStreaming::Off, CpuStreaming::On}) {
    for (at::ScalarType src : kFloats) {
      for (at::ScalarType flat : kFloats) {
        std::ostringstream what;
        what << src << " tensors, " << flat << " flat, streaming "
             << (streaming == CpuStreaming::On ? "on" : "off") << ": ";
        const std::vector<at::Tensor> tensors = layouts(rng, src);
        fgt::Options o;
        o.dtype = flat;
        o.num_threads = 2;
        o.cpu_streaming = streaming;
        const fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, o);
        if (out.empty()) out.emplace_back("describe", plan.core().describe());
        out.emplace_back(what.str() + "gather", bytes_of(fgtest::gather_poisoned(plan)));

        std::vector<at::Tensor> dest;
        for (const auto& t : tensors) dest.push_back(fgtest::poisoned_like(t));
        const at::Tensor values = fgtest::random_with_specials(rng, plan.numel(), flat);
        fgt::Plan::from_tensors(dest, {}, o).scatter(values);
        out.emplace_back(what.str() + "scatter", bytes_of(dest));

        for (double alpha :
             {kAlphas[rng() % std::size(kAlphas)], kAlphas[rng() % std::size(kAlphas)]}) {
          const at::Tensor update = fgtest::random_with_specials(rng, plan.numel(), flat);
          plan.scatter_add(update, alpha);
          out.emplace_back(what.str() + "scatter_add alpha " + std::to_string(alpha),
                           bytes_of(tensors));
        }
      }
    }
  }
  const at::Tensor specials = specials_at_every_lane(rng);
  for (const CpuStreaming streaming : {CpuStreaming::Off, CpuStreaming::On}) {
    for (const std::int64_t shift : {0, 1}) {
      const Bfloat16Runs runs = bfloat16_runs(rng, specials, streaming, shift);
      const std::string what = "specials shifted by " + std::to_string(shift) + ", streaming " +
                               (streaming == CpuStreaming::On ? "on" : "off") + ": ";
      out.emplace_back(what + "gather to bfloat16", bytes_of(runs.gathered));
      out.emplace_back(what + "scatter into bfloat16", bytes_of(runs.scattered));
      out.emplace_back(what + "scatter_add into bfloat16", bytes_of(runs.added));
    }
  }
  return out;
}

void write_records(const std::vector<Record>& records, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  for (const auto& [what, bytes] : records) {
    for (const std::string* s : {&what, &bytes}) {
      const std::uint64_t n = s->size();
      f.write(reinterpret_cast<const char*>(&n), sizeof n);
      f.write(s->data(), static_cast<std::streamsize>(n));
    }
  }
}

std::vector<Record> read_records(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<Record> out;
  auto read_string = [&](std::string& s) {
    std::uint64_t n = 0;
    if (!f.read(reinterpret_cast<char*>(&n), sizeof n)) return false;
    s.resize(n);
    return static_cast<bool>(f.read(s.data(), static_cast<std::streamsize>(n)));
  };
  Record r;
  while (read_string(r.first) && read_string(r.second)) out.push_back(r);
  return out;
}

// Run by the parent test in a child process; never on its own (DISABLED_).
TEST(CpuIsa, DISABLED_WriteWorkload) {
  const char* path = std::getenv("FLATGATHER_ISA_OUT");
  ASSERT_NE(path, nullptr) << "set FLATGATHER_ISA_OUT to the output file";
  write_records(workload(), path);
}

// The loops FLATGATHER_CPU_ISA=`isa` selects, run in a child process: the workload's records.
std::vector<Record> child_workload(const std::string& isa) {
  char self[4096] = {};
  EXPECT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  const std::string path =
      testing::TempDir() + "flatgather_isa_" + isa + "." + std::to_string(getpid()) + ".bin";
  std::remove(path.c_str());
  const std::string command = "FLATGATHER_CPU_ISA=" + isa + " FLATGATHER_ISA_OUT='" + path + "' '" +
                              self +
                              "' --gtest_also_run_disabled_tests"
                              " --gtest_filter=CpuIsa.DISABLED_WriteWorkload > '" +
                              path + ".log' 2>&1";
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << command << " failed; see " << path << ".log";
  if (status != 0) return {};
  std::vector<Record> records = read_records(path);
  std::remove(path.c_str());
  std::remove((path + ".log").c_str());
  return records;
}

TEST(CpuIsa, EveryLoopChoiceGivesTheSameBits) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    GTEST_SKIP() << "this CPU has no AVX2+FMA: the library only has the baseline loops here";
  }
  if (const char* isa = std::getenv("FLATGATHER_CPU_ISA"); isa && *isa) {
    GTEST_SKIP() << "FLATGATHER_CPU_ISA=" << isa << " is set: this process would not use AVX2";
  }
  const std::vector<Record> best = workload();
  const std::string& loops = best.front().second;
  ASSERT_NE(loops.find("loops=avx2+fma"), std::string::npos) << loops;
  for (const char* isa : {"avx2", "baseline"}) {
    SCOPED_TRACE(std::string("FLATGATHER_CPU_ISA=") + isa);
    const std::vector<Record> forced = child_workload(isa);
    ASSERT_EQ(forced.size(), best.size()) << "the child wrote " << forced.size() << " records";
    const std::string want =
        std::string("loops=") + (isa == std::string("avx2") ? "avx2+fma," : "baseline,");
    EXPECT_NE(forced.front().second.find(want), std::string::npos)
        << "FLATGATHER_CPU_ISA=" << isa << " did not select its loops: " << forced.front().second;
    std::size_t compared = 0;
    for (std::size_t i = 1; i < best.size(); ++i) {
      ASSERT_EQ(forced[i].first, best[i].first);
      EXPECT_TRUE(forced[i].second == best[i].second) << best[i].first << ": bits differ";
      compared += best[i].second.size();
    }
    EXPECT_GT(compared, 1000000u);  // the workload is not trivially small
  }
}

// Where the library was built with AVX512_BF16 rounding and the CPU has it, the default loops
// use it (else the tests above would compare the AVX2 loops with themselves).
TEST(CpuIsa, Avx512Bf16IsChosenWhereTheCpuHasIt) {
#if !FLATGATHER_CPU_AVX512BF16
  GTEST_SKIP() << "the compiler had no AVX512_BF16: the library rounds with AVX2 only";
#else
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
      !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bf16")) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16 (with AVX-512 F, BW, VL): its rounding does "
                    "not run here";
  }
  if (const char* isa = std::getenv("FLATGATHER_CPU_ISA"); isa && *isa) {
    GTEST_SKIP() << "FLATGATHER_CPU_ISA=" << isa << " is set";
  }
  const fgt::Plan plan = fgt::Plan::from_tensors({torch::randn({100})});
  EXPECT_NE(plan.core().describe().find("loops=avx2+fma+avx512bf16,"), std::string::npos)
      << plan.core().describe();
#endif
}

// The float32 <-> bfloat16 runs with specials at every lane, under the loops this process
// selected (AVX512_BF16 where the CPU has it), against LibTorch: .to(bfloat16) for the
// narrowing (any NaN for a NaN: flatgather writes its own NaN bits), the reference fused
// multiply-add for scatter_add.
TEST(CpuIsa, BFloat16SpecialsAtEveryLaneMatchLibTorch) {
  std::mt19937_64 rng(77);
  const at::Tensor specials = specials_at_every_lane(rng);
  for (const CpuStreaming streaming : {CpuStreaming::Off, CpuStreaming::On}) {
    for (const std::int64_t shift : {0, 1, 17}) {
      SCOPED_TRACE("shift " + std::to_string(shift) +
                   (streaming == CpuStreaming::On ? ", streaming" : ""));
      const Bfloat16Runs r = bfloat16_runs(rng, specials, streaming, shift);
      const at::Tensor narrowed = r.source.to(at::kBFloat16);
      EXPECT_TRUE(fgtest::bits_equal(r.gathered, narrowed));
      EXPECT_TRUE(fgtest::bits_equal(r.scattered, narrowed));
      EXPECT_TRUE(
          fgtest::bits_equal(r.added, fgtest::reference_add_scaled(r.before, r.source, 0.37)));
      const auto nans = [](const at::Tensor& t) { return t.isnan().sum().item<std::int64_t>(); };
      EXPECT_GE(nans(r.source), 5 * 32 - 1);  // five NaNs at every lane, one shifted out
      EXPECT_EQ(nans(r.gathered), nans(r.source));
      EXPECT_EQ(nans(r.scattered), nans(r.source));
    }
  }
}

// FLATGATHER_CPU_ISA set to what no loops answer to: a clear error on first use. Run by CTest
// (test_cpu_isa_env_bogus) with FLATGATHER_CPU_ISA=bogus; never on its own (DISABLED_).
TEST(CpuIsa, DISABLED_UnknownEnvironmentValueIsAnError) {
  const char* isa = std::getenv("FLATGATHER_CPU_ISA");
  ASSERT_TRUE(isa && std::string(isa) == "bogus") << "run with FLATGATHER_CPU_ISA=bogus";
  const at::Tensor t = torch::randn({1000});
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({t}).gather(),
                   "the environment variable FLATGATHER_CPU_ISA is 'bogus'",
                   "use auto, avx2 or baseline");
}

}  // namespace

// The AVX2+FMA and the baseline CPU loops give the same bits (NOTE: [cpu isa dispatch] in
// src/cpu_executor.cpp). The choice is made once per process, so the test runs one workload
// in its own process (AVX2 on this machine) and again in a child process of the same binary
// with FLATGATHER_CPU_ISA=baseline, and compares every output byte. The workload: gathers
// with every float cast, scatters into poisoned destinations, scatter_add with random alphas,
// over contiguous, transposed, channels_last and stepped tensors, special values included.
// LibTorch checks the baseline loops too: ctest runs test_fuzz with FLATGATHER_CPU_ISA=baseline.
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
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;

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

// Every output of the workload, in order, with what produced it. Runs under whichever loops
// this process selected; returns them and the plan's description first.
std::vector<Record> workload() {
  std::vector<Record> out;
  std::mt19937_64 rng(20240611);
  torch::manual_seed(20240611);
  static const double kAlphas[] = {1.0, -1.0, 0.37, 1e-3, 3.0e4, 1.0 / 3.0, -2.5e-5};
  for (at::ScalarType src : kFloats) {
    for (at::ScalarType flat : kFloats) {
      std::ostringstream what;
      what << src << " tensors, " << flat << " flat: ";
      const std::vector<at::Tensor> tensors = layouts(rng, src);
      fgt::Options o;
      o.dtype = flat;
      o.num_threads = 2;
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

TEST(CpuIsa, BaselineLoopsGiveTheAvx2Bits) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    GTEST_SKIP() << "this CPU has no AVX2+FMA: the library only has the baseline loops here";
  }
  if (const char* isa = std::getenv("FLATGATHER_CPU_ISA"); isa && *isa) {
    GTEST_SKIP() << "FLATGATHER_CPU_ISA=" << isa << " is set: this process would not use AVX2";
  }
  const std::vector<Record> avx2 = workload();
  ASSERT_NE(avx2.front().second.find("loops=avx2+fma"), std::string::npos) << avx2.front().second;

  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  const std::string path =
      testing::TempDir() + "flatgather_isa_baseline." + std::to_string(getpid()) + ".bin";
  std::remove(path.c_str());
  const std::string command = "FLATGATHER_CPU_ISA=baseline FLATGATHER_ISA_OUT='" + path + "' '" +
                              self +
                              "' --gtest_also_run_disabled_tests"
                              " --gtest_filter=CpuIsa.DISABLED_WriteWorkload > '" +
                              path + ".log' 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command << " failed; see " << path << ".log";
  const std::vector<Record> baseline = read_records(path);
  ASSERT_EQ(baseline.size(), avx2.size()) << "the child wrote " << baseline.size() << " records";
  EXPECT_NE(baseline.front().second.find("loops=baseline"), std::string::npos)
      << "FLATGATHER_CPU_ISA=baseline did not select the baseline loops: "
      << baseline.front().second;
  std::size_t compared = 0;
  for (std::size_t i = 1; i < avx2.size(); ++i) {
    ASSERT_EQ(baseline[i].first, avx2[i].first);
    EXPECT_TRUE(baseline[i].second == avx2[i].second) << avx2[i].first << ": bits differ";
    compared += avx2[i].second.size();
  }
  EXPECT_GT(compared, 1000000u);  // the workload is not trivially small
  std::remove(path.c_str());
  std::remove((path + ".log").c_str());
}

}  // namespace

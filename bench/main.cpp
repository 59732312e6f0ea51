// flatgather-bench: flatgather's gather / scatter / scatter_add next to every peer, on
// embedded model suites or a user's manifest, with a summary table per op and device.
//
// Google Benchmark's flags pass through. Defaults added unless given: 5 repetitions,
// --benchmark_min_time=0.05, aggregates only on the console (medians are what the summary uses).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <omp.h>

#include "suites.h"
#include "workload.h"

#ifndef FGBENCH_GBENCH_VERSION
#define FGBENCH_GBENCH_VERSION 107
#endif

namespace fgbench {
namespace {

const char* const kOurMethods[] = {"flatgather", "flatgather_checked"};

void print_usage(const std::vector<Suite>& suites) {
  std::cout <<
      R"(usage: flatgather-bench [--device cpu|cuda|all] [--manifest FILE.json]... [--threads N] [--list-suites]
                        [Google Benchmark flags]

Times flatgather's gather (tensors -> flat), scatter (flat -> tensors) and scatter_add
(t += alpha * flat) next to its peers, on the embedded suites and on any manifest given.
Benchmarks are named <op>/<device>/<suite>/<method>:
  op      gather | scatter | scatter_add
  device  cpu | cuda
  method  flatgather            ours, Options::check_tensors = false (hot-loop setting)
          flatgather_checked    ours, check_tensors = true (the default: O(tensors) host
                                work per call); on suites of 1,000 tensors or more
          torch_cat             at::cat_out of every t.reshape(-1) into the flat buffer (gather)
          copy_loop             one copy_ per tensor (add_ for scatter_add)
          foreach_copy          at::_foreach_copy_ (cuda, LibTorch >= 2.1)
          foreach_add           at::_foreach_add_ (cuda, scatter_add)
          split_with_sizes_copy at::split_with_sizes_copy_out (cuda, scatter, plain suites)
          cub_batched           cub::DeviceMemcpy::Batched, metadata prepared untimed (cuda)
          memcpy_batch          cudaMemcpyBatchAsync, CUDA >= 12.8 (cuda)
          roofline              one plain copy of the same total bytes (memcpy on the same
                                OpenMP threads / cudaMemcpyAsync device to device)
Counters: bytes_per_second (bytes read + written per second), time_us (per call), bytes,
tensors, buffer_sets, cpu_threads (CPU threads used). Each benchmark's result is checked once
against LibTorch; a wrong answer is an error, not a time, and makes the exit status 1.

Options:
  --device cpu|cuda|all  devices to run (default: all that are present)
  --manifest FILE.json   add a suite named after FILE's stem from a JSON array of
                         {"name": str, "shape": [int, ...], "dtype": "float32"|"bfloat16"|...}
                         Dump one from a PyTorch model with:
                           import json, torch
                           m = ...  # your model
                           json.dump([{"name": n, "shape": list(p.shape), "dtype": str(p.dtype)[6:]}
                                      for n, p in m.named_parameters()], open("model.json", "w"))
  --threads N            CPU threads for every method (default: OMP_NUM_THREADS, else
                         every core); sets both OpenMP's and LibTorch's intra-op count
  --list-suites          print the suites and exit
  --help                 this text
Google Benchmark's flags pass through, e.g. --benchmark_filter=REGEX,
  --benchmark_format=console|json|csv, --benchmark_out=FILE --benchmark_out_format=json,
  --benchmark_min_time=SECONDS (default here 0.05), --benchmark_repetitions=N (default here 5).

Suites:
)";
  for (const Suite& s : suites) {
    std::printf("  %-12s %6zu tensors %10s  %s\n", s.name.c_str(), s.tensors.size(),
                format_bytes(s.tensor_bytes()).c_str(), s.description.c_str());
  }
  std::cout << "\nWith no arguments it runs every suite on every device present (about 1-2 minutes\n"
               "on a 2-core CPU) and prints one summary table per op and device.\n";
}

void list_suites(const std::vector<Suite>& suites) {
  std::printf("%-12s %-8s %8s %14s %12s  %s\n", "suite", "devices", "tensors", "bytes",
              "flat dtype", "formula");
  for (const Suite& s : suites) {
    std::printf("%-12s %-8s %8zu %14lld %12s  %s\n", s.name.c_str(), s.gpu_only ? "cuda" : "cpu,cuda",
                s.tensors.size(), static_cast<long long>(s.tensor_bytes()),
                flatgather::dtype_name(s.flat_dtype), s.description.c_str());
  }
}

// The value of `--flag=value` or `--flag value` in argv, or "".
bool flag_given(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

std::string flag_value(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
  }
  return "";
}

// Counts benchmark names the filter selects, the way Google Benchmark reads it (an extended
// regex searched in the name; a leading '-' negates).
bool filter_selects(const std::string& spec, const std::string& name) {
  std::string re = spec.empty() || spec == "all" ? "." : spec;
  bool negate = false;
  if (!re.empty() && re[0] == '-') {
    negate = true;
    re = re.substr(1);
  }
  try {
    const bool hit = std::regex_search(name, std::regex(re, std::regex::extended));
    return hit != negate;
  } catch (const std::regex_error&) {
    return true;
  }
}

// ---- the summary ------------------------------------------------------------------------------

struct Result {
  double bytes_per_second = 0;
  double threads = 0;
  bool ok = false;
  std::string error;
  bool from_median = false;
};

class SummaryReporter final : public benchmark::BenchmarkReporter {
 public:
  explicit SummaryReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner)
      : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) collect(run);
    inner_->ReportRuns(runs);
  }

  void Finalize() override { inner_->Finalize(); }

  const std::map<std::string, Result>& results() const { return results_; }

 private:
  void collect(const Run& run) {
    const std::string name = run.run_name.str();
    Result& r = results_[name];
#if FGBENCH_GBENCH_VERSION >= 108
    const bool failed = run.skipped != 0;
    const std::string message = run.skip_message;
#else
    const bool failed = run.error_occurred;
    const std::string message = run.error_message;
#endif
    if (failed) {
      r.error = message;
      r.ok = false;
      return;
    }
    const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    const bool single = run.run_type == Run::RT_Iteration && !r.from_median;
    if (!median && !single) return;
    auto bps = run.counters.find("bytes_per_second");
    if (bps == run.counters.end()) return;
    r.bytes_per_second = bps->second.value;
    auto threads = run.counters.find("cpu_threads");
    r.threads = threads == run.counters.end() ? 0 : threads->second.value;
    r.ok = r.error.empty();
    r.from_median = r.from_median || median;
  }

  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, Result> results_;
};

std::string gbps(double bytes_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes_per_second / 1e9);
  return buf;
}

std::string ratio(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", a / b);
  return buf;
}

void print_summary(std::ostream& out, const std::map<std::string, Result>& results,
                   const std::vector<Dev>& devices, const std::vector<Suite>& suites,
                   const std::string& cuda_skip_reason) {
  const Op ops[] = {Op::Gather, Op::Scatter, Op::ScatterAdd};
  out << "\n==== flatgather-bench summary: medians, GB/s = (bytes read + bytes written) / s ====\n";
  if (!cuda_skip_reason.empty()) out << "cuda: not run (" << cuda_skip_reason << ")\n";
  for (Dev dev : devices) {
    for (Op op : ops) {
      const std::string prefix = std::string(op_name(op)) + "/" + dev_name(dev) + "/";
      std::ostringstream table;
      int rows = 0;
      double threads = 0;
      std::map<std::string, std::pair<std::string, std::set<std::string>>> unavailable;
      std::vector<std::string> errors;
      char line[512];
      std::snprintf(line, sizeof line, "%-12s %8s %10s %10s %10s  %-28s %9s %9s\n", "suite",
                    "tensors", "MB", "ours GB/s", "checked", "best peer (GB/s)", "ours/peer",
                    "ours/roof");
      table << line;
      for (const Suite& suite : suites) {
        if (suite.gpu_only && dev == Dev::CPU) continue;
        std::vector<Unavailable> missing;
        const std::vector<std::string> methods = methods_for(op, dev, suite, &missing);
        const std::string base = prefix + suite.name + "/";
        auto find = [&](const std::string& method) -> const Result* {
          auto it = results.find(base + method);
          return it == results.end() ? nullptr : &it->second;
        };
        bool any = false;
        for (const std::string& method : methods) {
          if (const Result* r = find(method)) {
            any = true;
            if (!r->error.empty()) errors.push_back(base + method + ": " + r->error);
          }
        }
        if (!any) continue;
        for (const Unavailable& u : missing) {
          auto& entry = unavailable[u.method];
          entry.first = u.reason;
          entry.second.insert(suite.name);
        }
        const Result* ours = find("flatgather");
        const Result* checked = find("flatgather_checked");
        const Result* roof = find("roofline");
        std::string best_name = "-";
        double best = 0;
        for (const std::string& method : methods) {
          if (method == "roofline" || method == kOurMethods[0] || method == kOurMethods[1]) continue;
          const Result* r = find(method);
          if (r && r->ok && r->bytes_per_second > best) {
            best = r->bytes_per_second;
            best_name = method;
          }
        }
        const double ours_bps = ours && ours->ok ? ours->bytes_per_second : 0;
        if (ours && ours->ok) threads = ours->threads;
        const std::string peer = best > 0 ? best_name + " (" + gbps(best) + ")" : "-";
        std::snprintf(line, sizeof line, "%-12s %8zu %10.2f %10s %10s  %-28s %9s %9s\n",
                      suite.name.c_str(), suite.tensors.size(),
                      static_cast<double>(suite.tensor_bytes()) / 1e6,
                      ours_bps > 0 ? gbps(ours_bps).c_str() : "error",
                      checked && checked->ok ? gbps(checked->bytes_per_second).c_str() : "-",
                      peer.c_str(), ratio(ours_bps, best).c_str(),
                      ratio(ours_bps, roof && roof->ok ? roof->bytes_per_second : 0).c_str());
        table << line;
        ++rows;
      }
      if (rows == 0) continue;
      out << "\n" << op_name(op) << " on " << dev_name(dev) << " (" << device_description(dev);
      if (dev == Dev::CPU && threads > 0) {
        out << ", " << static_cast<int>(threads) << (threads == 1 ? " thread" : " threads");
      }
      out << ")\n" << table.str();
      if (dev == Dev::CPU) {
        out << "GPU-only peers (foreach_copy/foreach_add, split_with_sizes_copy, cub_batched, "
               "memcpy_batch) run only on cuda.\n";
      }
      for (const auto& [method, entry] : unavailable) {
        std::string which;
        for (const std::string& s : entry.second) which += (which.empty() ? "" : ", ") + s;
        out << "not run: " << method << " (" << entry.first << ") for " << which << "\n";
      }
      for (const std::string& e : errors) out << "ERROR " << e << "\n";
    }
  }
  out << "\nMB: bytes of the tensors. checked: ours with check_tensors=true. ours/roof: against one\n"
         "plain copy of the same total bytes. MB column and formulas: flatgather-bench --list-suites.\n";
}

std::unique_ptr<benchmark::BenchmarkReporter> make_display_reporter(const std::string& format) {
  if (format == "json") return std::make_unique<benchmark::JSONReporter>();
  if (format == "csv") {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return std::make_unique<benchmark::CSVReporter>();
#pragma GCC diagnostic pop
  }
  int options = benchmark::ConsoleReporter::OO_Tabular;
  if (isatty(STDOUT_FILENO)) options |= benchmark::ConsoleReporter::OO_Color;
  return std::make_unique<benchmark::ConsoleReporter>(
      static_cast<benchmark::ConsoleReporter::OutputOptions>(options));
}

}  // namespace
}  // namespace fgbench

int main(int argc, char** argv) {
  using namespace fgbench;
  std::vector<Suite> suites = builtin_suites();
  // Smallest first, so progress is visible early; the GPU-only one last.
  const std::vector<std::string> order = {"many-tiny", "resnet50", "strided", "mixed-cast",
                                          "gpt2-small", "llama-7b"};
  std::stable_sort(suites.begin(), suites.end(), [&](const Suite& a, const Suite& b) {
    return std::find(order.begin(), order.end(), a.name) < std::find(order.begin(), order.end(), b.name);
  });

  // Our own flags; the rest goes to Google Benchmark.
  std::vector<char*> rest = {argv[0]};
  std::string device_flag = "all";
  int threads = 0;
  bool list = false, help = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&](const std::string& flag) -> std::string {
        if (a.size() > flag.size() && a[flag.size()] == '=') return a.substr(flag.size() + 1);
        if (i + 1 >= argc) throw std::runtime_error(flag + " needs a value");
        return argv[++i];
      };
      if (a == "--help" || a == "-h") {
        help = true;
      } else if (a.rfind("--threads", 0) == 0 && (a.size() == 9 || a[9] == '=')) {
        const std::string v = value("--threads");
        threads = std::atoi(v.c_str());
        if (threads <= 0) throw std::runtime_error("--threads must be a positive integer, got '" + v + "'");
      } else if (a == "--list-suites") {
        list = true;
      } else if (a.rfind("--device", 0) == 0 && (a.size() == 8 || a[8] == '=')) {
        device_flag = value("--device");
        if (device_flag != "cpu" && device_flag != "cuda" && device_flag != "all") {
          throw std::runtime_error("--device must be cpu, cuda or all, got '" + device_flag + "'");
        }
      } else if (a.rfind("--manifest", 0) == 0 && (a.size() == 10 || a[10] == '=')) {
        Suite s = load_manifest(value("--manifest"));
        for (const Suite& other : suites) {
          if (other.name == s.name) {
            throw std::runtime_error("--manifest: suite name '" + s.name +
                                     "' (the file's stem) is taken by an embedded suite; rename the file");
          }
        }
        suites.push_back(std::move(s));
      } else {
        rest.push_back(argv[i]);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flatgather-bench: %s\n", e.what());
    return 2;
  }
  if (help) {
    print_usage(suites);
    return 0;
  }
  if (list) {
    list_suites(suites);
    return 0;
  }

  // Defaults that keep the full run short and report medians, unless the caller chose.
  std::vector<std::string> defaults;
  const int nrest = static_cast<int>(rest.size());
  if (!flag_given(nrest, rest.data(), "--benchmark_repetitions")) defaults.push_back("--benchmark_repetitions=5");
  if (!flag_given(nrest, rest.data(), "--benchmark_min_time")) defaults.push_back("--benchmark_min_time=0.05");
  if (!flag_given(nrest, rest.data(), "--benchmark_display_aggregates_only") &&
      !flag_given(nrest, rest.data(), "--benchmark_report_aggregates_only")) {
    defaults.push_back("--benchmark_display_aggregates_only=true");
  }
  for (std::string& d : defaults) rest.push_back(d.data());
  const std::string filter = flag_value(static_cast<int>(rest.size()), rest.data(), "--benchmark_filter");
  std::string format = flag_value(static_cast<int>(rest.size()), rest.data(), "--benchmark_format");
  if (format.empty()) format = "console";

  int bargc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&bargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return 2;

  // CPU threads: one number for flatgather's OpenMP loops, the roofline and LibTorch's
  // intra-op pool (LibTorch otherwise picks its own default and resets OpenMP's to it).
  if (threads == 0) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    threads = env && std::atoi(env) > 0 ? std::atoi(env)
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  at::set_num_threads(threads);
  omp_set_num_threads(threads);

  // Devices.
  std::vector<Dev> devices;
  const std::string cuda_reason = cuda_unavailable_reason();
  std::string cuda_skip;
  if (device_flag != "cuda") devices.push_back(Dev::CPU);
  if (device_flag != "cpu") {
    if (cuda_reason.empty()) {
      devices.push_back(Dev::CUDA);
    } else {
      cuda_skip = cuda_reason;
      std::fprintf(stderr, "flatgather-bench: cuda benchmarks skipped: %s\n", cuda_reason.c_str());
    }
  }
  // FLATGATHER_REQUIRE_GPU=1 (scripts/gpu-check.sh on a GPU machine): no CUDA is a failure.
  const char* require_gpu = std::getenv("FLATGATHER_REQUIRE_GPU");
  if (require_gpu && std::string(require_gpu) == "1" && !cuda_reason.empty()) {
    std::fprintf(stderr, "flatgather-bench: FLATGATHER_REQUIRE_GPU=1 but no CUDA: %s\n",
                 cuda_reason.c_str());
    return 1;
  }
  if (devices.empty()) {
    std::fprintf(stderr, "flatgather-bench: nothing to run (--device %s)\n", device_flag.c_str());
    return 0;
  }

  // Register, counting what the filter selects so progress can say [k/N].
  struct Entry {
    std::string name;
    Op op;
    Dev dev;
    const Suite* suite;
    std::string method;
  };
  std::vector<Entry> entries;
  for (Dev dev : devices) {
    for (const Suite& suite : suites) {
      if (suite.gpu_only && dev == Dev::CPU) continue;
      for (Op op : {Op::Gather, Op::Scatter, Op::ScatterAdd}) {
        std::vector<Unavailable> missing;
        const std::vector<std::string> methods = methods_for(op, dev, suite, &missing);
        if (methods.empty() && !missing.empty()) {
          std::fprintf(stderr, "flatgather-bench: %s/%s/%s not run: %s\n", op_name(op), dev_name(dev),
                       suite.name.c_str(), missing.front().reason.c_str());
        }
        for (const std::string& method : methods) {
          entries.push_back({std::string(op_name(op)) + "/" + dev_name(dev) + "/" + suite.name + "/" + method,
                             op, dev, &suite, method});
        }
      }
    }
  }
  int selected = 0;
  for (const Entry& e : entries) selected += filter_selects(filter, e.name) ? 1 : 0;
  int index = 0;
  for (const Entry& e : entries) {
    std::string progress = e.name;
    if (filter_selects(filter, e.name)) {
      progress = "[" + std::to_string(++index) + "/" + std::to_string(selected) + "] " + e.name;
    }
    benchmark::RegisterBenchmark(e.name.c_str(), [e, progress](benchmark::State& state) {
      run_benchmark(state, e.op, e.dev, *e.suite, e.method, progress);
    })->Unit(benchmark::kMicrosecond);
  }

  benchmark::AddCustomContext("flatgather_cpu", device_description(Dev::CPU));
  benchmark::AddCustomContext("flatgather_omp_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("flatgather_torch_threads", std::to_string(at::get_num_threads()));
  if (cuda_reason.empty()) benchmark::AddCustomContext("flatgather_cuda_device", device_description(Dev::CUDA));
  benchmark::AddCustomContext("flatgather_cuda", cuda_reason.empty() ? "yes" : cuda_reason);

  SummaryReporter reporter(make_display_reporter(format));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  release_workload();
  if (!reporter.results().empty()) {
    print_summary(format == "console" ? std::cout : std::cerr, reporter.results(), devices, suites,
                  cuda_skip);
  }
  benchmark::Shutdown();
  // A wrong answer (any method) or a failure of ours fails the run (CI's smoke test relies on
  // it); a peer that throws (a size its LibTorch cannot handle, say) is reported, not fatal.
  for (const auto& [name, result] : reporter.results()) {
    if (result.error.empty()) continue;
    const std::string method = name.substr(name.find_last_of('/') + 1);
    if (result.error.rfind("wrong result", 0) == 0 || method.rfind("flatgather", 0) == 0) return 1;
  }
  return 0;
}

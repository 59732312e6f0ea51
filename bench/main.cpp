// flatgather-bench: flatgather's gather / scatter / scatter_add next to every peer, on the
// embedded model suites or a user's manifest. This file holds the command line, the
// registration of one Google Benchmark per <op>/<device>/<suite>/<method> (methods from the
// table in methods.cpp), the rounds of --runs, and the exit status. The bodies are in
// timing.cpp, the summary in summary.cpp.
//
// Output: by default one progress line per benchmark on stderr, then the summary; --full
// adds Google Benchmark's console table. Google Benchmark's flags pass through; defaults
// added unless given: 5 repetitions, --benchmark_min_time=0.05, aggregates only on the
// console (medians are what the summary uses).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <omp.h>

#include "methods.h"
#include "suites.h"
#include "summary.h"
#include "timing.h"
#include "workload.h"

namespace fgbench {
namespace {

void print_usage(const std::vector<Suite>& suites) {
  std::cout <<
      R"(usage: flatgather-bench [--device cpu|cuda|all] [--ops OP,...|all] [--manifest FILE.json]...
                        [--threads N] [--full] [--summary_out FILE.md] [--runs N]
                        [--list-suites] [Google Benchmark flags]

Times flatgather's gather (tensors -> flat), scatter (flat -> tensors) and scatter_add
(t += alpha * flat) next to its peers, on the embedded suites and on any manifest given; with
--ops, also gathers that compute gradient statistics in the same pass.
Benchmarks are named <op>/<device>/<suite>/<method>:
  op      gather | scatter | scatter_add  (the default --ops)
          gather_norm  gather + the flat buffer's L2 norm + clip_grad_norm_'s clip
                       coefficient (max_norm 1)
          unscale      gather times a device scalar 1 / loss_scale + found_inf (cuda; the
                       peer's op has no CPU kernel in LibTorch 1.13; on the CPU with
                       FGBENCH_GPU_PEERS_ON_CPU=1)
  device  cpu | cuda
)";
  const char* prefix = "  method  ";
  int width = 21;  // the name column: as wide as the longest name
  for (const MethodSpec& m : method_table())
    width = std::max(width, static_cast<int>(std::strlen(m.name)));
  for (const MethodSpec& m : method_table()) {
    std::string help = m.help;
    for (std::size_t nl = help.find('\n'); nl != std::string::npos; nl = help.find('\n', nl + 1)) {
      help.insert(nl + 1, std::string(static_cast<std::size_t>(width) + 11, ' '));
    }
    std::printf("%s%-*s %s\n", prefix, width, m.name, help.c_str());
    prefix = "          ";
  }
  std::cout <<
      R"(Counters: bytes_per_second (bytes read + written per second), time_us (per call), bytes,
tensors, buffer_sets, cpu_threads (CPU threads used). Each benchmark's result is checked once
against LibTorch; a wrong answer is an error, not a time, and makes the exit status 1. The
statistics ops' flat buffer is checked exactly, found_inf exactly, the norm and the clip
coefficient against float64 within 1e-6 relative (ours) or 1e-2, 4 units in the last place
of bfloat16 (a peer: float32 accumulation).

Options:
  --device cpu|cuda|all  devices to run (default: all that are present)
  --ops OP,...|all       ops to run, comma-separated (default: gather,scatter,scatter_add;
                         all adds gather_norm and unscale)
  --manifest FILE.json   add a suite named after FILE's stem from a JSON array of
                         {"name": str, "shape": [int, ...], "dtype": "float32"|"bfloat16"|...}
                         Dump one from a PyTorch model with:
                           import json, torch
                           m = ...  # your model
                           json.dump([{"name": n, "shape": list(p.shape), "dtype": str(p.dtype)[6:]}
                                      for n, p in m.named_parameters()], open("model.json", "w"))
  --threads N            CPU threads for every method (default: OMP_NUM_THREADS, else
                         every core); sets both OpenMP's and LibTorch's intra-op count
  --progress             one line per benchmark on stderr, then the summary (the default)
  --full                 also Google Benchmark's console table (mean, median, stddev, cv)
  --summary_out FILE.md  also write the summary as Markdown to FILE.md
  --runs N               N rounds, each in a new random order (suites, and ops and methods
                         within a suite); the summary shows each ratio's median over the
                         rounds and its range. With --benchmark_out, the file holds every
                         round's aggregates in one JSON document.
  --list-suites          print the suites and exit
  --help                 this text
Google Benchmark's flags pass through, e.g. --benchmark_filter=REGEX,
  --benchmark_format=console|json|csv, --benchmark_out=FILE --benchmark_out_format=json,
  --benchmark_min_time=SECONDS (default here 0.05), --benchmark_repetitions=N (default here 5).
Environment:
  FLATGATHER_REQUIRE_GPU=1     fail (exit 1) when no CUDA benchmark would run
  FGBENCH_GPU_PEERS_ON_CPU=1   also run the GPU peers on the CPU (to check them without a GPU)

Suites:
)";
  for (const Suite& s : suites) {
    std::printf("  %-12s %6zu tensors %10s  %s\n", s.name.c_str(), s.tensors.size(),
                format_bytes(s.tensor_bytes()).c_str(), s.description.c_str());
  }
  std::cout << "\nWith no arguments it runs every suite on every device present (about 1-2 "
               "minutes\non a 2-core CPU) and prints one summary table per op and device.\n";
}

void list_suites(const std::vector<Suite>& suites) {
  std::printf("%-12s %-8s %8s %14s %12s  %s\n", "suite", "devices", "tensors", "bytes",
              "flat dtype", "formula");
  for (const Suite& s : suites) {
    std::printf("%-12s %-8s %8zu %14lld %12s  %s\n", s.name.c_str(),
                s.gpu_only ? "cuda" : "cpu,cuda", s.tensors.size(),
                static_cast<long long>(s.tensor_bytes()), flatgather::dtype_name(s.flat_dtype),
                s.description.c_str());
  }
}

// Whether `--flag` or `--flag=value` is in argv.
bool flag_given(const std::vector<char*>& args, const std::string& flag) {
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string a = args[i];
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

// The value of `--flag=value` in argv, or "".
std::string flag_value(const std::vector<char*>& args, const std::string& flag) {
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string a = args[i];
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
  }
  return "";
}

// Whether the filter selects a benchmark name, the way Google Benchmark reads it (an
// extended regex searched in the name; a leading '-' negates).
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

// One benchmark to register.
struct Entry {
  std::string name;
  BenchOp op;
  Dev dev;
  const Suite* suite;
  const MethodSpec* method;
};

// The order of one round of --runs: suites in random order, each suite's benchmarks
// shuffled among themselves (a suite stays resident while its benchmarks run).
std::vector<Entry> shuffled(const std::vector<Entry>& entries, std::mt19937_64& rng) {
  std::vector<std::vector<Entry>> groups;
  for (const Entry& e : entries) {
    if (groups.empty() || groups.back().front().suite != e.suite ||
        groups.back().front().dev != e.dev) {
      groups.emplace_back();
    }
    groups.back().push_back(e);
  }
  std::shuffle(groups.begin(), groups.end(), rng);
  std::vector<Entry> out;
  for (std::vector<Entry>& group : groups) {
    std::shuffle(group.begin(), group.end(), rng);
    out.insert(out.end(), group.begin(), group.end());
  }
  return out;
}

void register_all(const std::vector<Entry>& entries, const std::string& filter,
                  const std::string& round) {
  benchmark::ClearRegisteredBenchmarks();
  int selected = 0;
  for (const Entry& e : entries) selected += filter_selects(filter, e.name) ? 1 : 0;
  int index = 0;
  for (const Entry& e : entries) {
    std::string progress = e.name;
    if (filter_selects(filter, e.name)) {
      progress =
          "[" + round + std::to_string(++index) + "/" + std::to_string(selected) + "] " + e.name;
    }
    benchmark::RegisterBenchmark(e.name.c_str(), [e, progress](benchmark::State& state) {
      run_benchmark(state, e.op, e.dev, *e.suite, *e.method, progress);
    })->Unit(benchmark::kMicrosecond);
  }
}

// --ops: a comma-separated list of op names, or "all".
std::vector<BenchOp> parse_ops(const std::string& list) {
  if (list == "all") return {std::begin(kAllOps), std::end(kAllOps)};
  std::vector<BenchOp> ops;
  std::size_t begin = 0;
  while (begin <= list.size()) {
    const std::size_t end = std::min(list.find(',', begin), list.size());
    const std::string name = list.substr(begin, end - begin);
    const std::optional<BenchOp> op = op_from_name(name);
    if (!op) {
      std::string valid;
      for (BenchOp o : kAllOps) valid += std::string(valid.empty() ? "" : ", ") + op_name(o);
      throw std::runtime_error("--ops: unknown op '" + name + "'; valid: " + valid + " or all");
    }
    if (std::find(ops.begin(), ops.end(), *op) == ops.end()) ops.push_back(*op);
    begin = end + 1;
  }
  // In kAllOps order, so that the summary's tables come in one order.
  std::vector<BenchOp> ordered;
  for (BenchOp o : kAllOps) {
    if (std::find(ops.begin(), ops.end(), o) != ops.end()) ordered.push_back(o);
  }
  return ordered;
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

}  // namespace
}  // namespace fgbench

int main(int argc, char** argv) {
  using namespace fgbench;
  std::vector<Suite> suites = builtin_suites();
  // Smallest first, so progress is visible early; the GPU-only one last.
  const std::vector<std::string> order = {"many-tiny",  "resnet18-state", "resnet50", "strided",
                                          "mixed-cast", "gpt2-small",     "llama-7b"};
  std::stable_sort(suites.begin(), suites.end(), [&](const Suite& a, const Suite& b) {
    return std::find(order.begin(), order.end(), a.name) <
           std::find(order.begin(), order.end(), b.name);
  });

  // Our own flags; the rest goes to Google Benchmark.
  std::vector<char*> rest = {argv[0]};
  std::string device_flag = "all";
  std::vector<BenchOp> ops(std::begin(kDefaultOps), std::end(kDefaultOps));
  std::string summary_path;
  int threads = 0, runs = 1;
  bool list = false, help = false, full = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto is = [&](const std::string& flag) {
        return a.rfind(flag, 0) == 0 && (a.size() == flag.size() || a[flag.size()] == '=');
      };
      auto value = [&](const std::string& flag) -> std::string {
        if (a.size() > flag.size() && a[flag.size()] == '=') return a.substr(flag.size() + 1);
        if (i + 1 >= argc) throw std::runtime_error(flag + " needs a value");
        return argv[++i];
      };
      auto positive = [&](const std::string& flag) {
        const std::string v = value(flag);
        const int n = std::atoi(v.c_str());
        if (n <= 0) throw std::runtime_error(flag + " must be a positive integer, got '" + v + "'");
        return n;
      };
      if (a == "--help" || a == "-h") {
        help = true;
      } else if (is("--threads")) {
        threads = positive("--threads");
      } else if (is("--runs")) {
        runs = positive("--runs");
      } else if (a == "--full") {
        full = true;
      } else if (a == "--progress") {
        full = false;
      } else if (is("--summary_out")) {
        summary_path = value("--summary_out");
      } else if (a == "--list-suites") {
        list = true;
      } else if (is("--device")) {
        device_flag = value("--device");
        if (device_flag != "cpu" && device_flag != "cuda" && device_flag != "all") {
          throw std::runtime_error("--device must be cpu, cuda or all, got '" + device_flag + "'");
        }
      } else if (is("--ops")) {
        ops = parse_ops(value("--ops"));
      } else if (is("--manifest")) {
        Suite s = load_manifest(value("--manifest"));
        for (const Suite& other : suites) {
          if (other.name == s.name) {
            throw std::runtime_error("--manifest: suite name '" + s.name +
                                     "' (the file's stem) is taken by an embedded suite; "
                                     "rename the file");
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
  // Opened now, so that a bad path fails before the run rather than after it.
  std::ofstream summary_file;
  if (!summary_path.empty()) {
    summary_file.open(summary_path);
    if (!summary_file) {
      std::fprintf(stderr, "flatgather-bench: --summary_out: cannot write '%s'\n",
                   summary_path.c_str());
      return 2;
    }
  }

  // Defaults that keep the full run short and report medians, unless the caller chose.
  std::vector<std::string> defaults;
  if (!flag_given(rest, "--benchmark_repetitions")) {
    defaults.push_back("--benchmark_repetitions=5");
  }
  if (!flag_given(rest, "--benchmark_min_time")) defaults.push_back("--benchmark_min_time=0.05");
  if (!flag_given(rest, "--benchmark_display_aggregates_only") &&
      !flag_given(rest, "--benchmark_report_aggregates_only")) {
    defaults.push_back("--benchmark_display_aggregates_only=true");
  }
  for (std::string& d : defaults) rest.push_back(d.data());
  const std::string filter = flag_value(rest, "--benchmark_filter");
  std::string format = flag_value(rest, "--benchmark_format");
  if (format.empty()) format = "console";
  // --runs calls Google Benchmark once per round, and it would rewrite --benchmark_out each
  // time: the file is written here instead, once, with every round in it.
  std::string json_out_path;
  if (runs > 1) {
    json_out_path = flag_value(rest, "--benchmark_out");
    const std::string out_format = flag_value(rest, "--benchmark_out_format");
    if (!out_format.empty() && out_format != "json") {
      std::fprintf(stderr, "flatgather-bench: --runs writes --benchmark_out as JSON only\n");
      return 2;
    }
    rest.erase(std::remove_if(
                   rest.begin() + 1, rest.end(),
                   [](char* a) {
      const std::string s = a;
      return s.rfind("--benchmark_out=", 0) == 0 || s.rfind("--benchmark_out_format=", 0) == 0;
                   }),
               rest.end());
  }

  int bargc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&bargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return 2;

  // CPU threads: one number for flatgather's OpenMP loops, the roofline and LibTorch's
  // intra-op pool (LibTorch otherwise picks its own default and resets OpenMP's to it).
  if (threads == 0) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    threads = env && std::atoi(env) > 0
                  ? std::atoi(env)
                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  at::set_num_threads(threads);
  omp_set_num_threads(threads);

  // Devices.
  const bool require_gpu = env_set("FLATGATHER_REQUIRE_GPU");
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

  // Every benchmark, counting what the filter selects so progress can say [k/N].
  std::vector<Entry> entries;
  for (Dev dev : devices) {
    for (BenchOp op : ops) {
      const std::string not_run = op_not_run(op, dev);
      if (!not_run.empty()) {
        std::fprintf(stderr, "flatgather-bench: %s not run on %s: %s\n", op_name(op), dev_name(dev),
                     not_run.c_str());
      }
    }
    for (const Suite& suite : suites) {
      if (suite.gpu_only && dev == Dev::CPU) continue;
      for (BenchOp op : ops) {
        if (!op_not_run(op, dev).empty()) continue;  // said once, above
        std::vector<Unavailable> missing;
        const std::vector<const MethodSpec*> methods = methods_for(op, dev, suite, &missing);
        if (methods.empty() && !missing.empty()) {
          std::fprintf(stderr, "flatgather-bench: %s/%s/%s not run: %s\n", op_name(op),
                       dev_name(dev), suite.name.c_str(), missing.front().reason.c_str());
        }
        for (const MethodSpec* method : methods) {
          entries.push_back({std::string(op_name(op)) + "/" + dev_name(dev) + "/" + suite.name +
                                 "/" + method->name,
                             op, dev, &suite, method});
        }
      }
    }
  }

  if (require_gpu) {
    std::string why;
    if (device_flag == "cpu") {
      why = "--device cpu";
    } else if (!cuda_reason.empty()) {
      why = cuda_reason;
    } else if (std::none_of(entries.begin(), entries.end(), [&](const Entry& e) {
                 return e.dev == Dev::CUDA && filter_selects(filter, e.name);
               })) {
      why = "--benchmark_filter=" + filter + " selects no cuda benchmark";
    }
    if (!why.empty()) {
      std::fprintf(stderr,
                   "flatgather-bench: FLATGATHER_REQUIRE_GPU is set but no CUDA benchmark would "
                   "run: %s\n",
                   why.c_str());
      return 1;
    }
  }
  if (devices.empty()) {
    std::fprintf(stderr, "flatgather-bench: nothing to run (--device %s)\n", device_flag.c_str());
    return 0;
  }

  benchmark::AddCustomContext("flatgather_cpu", device_description(Dev::CPU));
  benchmark::AddCustomContext("flatgather_omp_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("flatgather_torch_threads", std::to_string(at::get_num_threads()));
  if (cuda_reason.empty()) {
    benchmark::AddCustomContext("flatgather_cuda_device", device_description(Dev::CUDA));
  }
  benchmark::AddCustomContext("flatgather_cuda", cuda_reason.empty() ? "yes" : cuda_reason);

  const bool quiet = format == "console" && !full;
  SummaryReporter reporter(make_display_reporter(format), quiet);
  if (runs == 1) {
    register_all(entries, filter, "");
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    std::ofstream json_file;
    std::unique_ptr<benchmark::JSONReporter> json;
    if (!json_out_path.empty()) {
      json_file.open(json_out_path);
      if (!json_file) {
        std::fprintf(stderr, "flatgather-bench: cannot write '%s'\n", json_out_path.c_str());
        return 2;
      }
      json = std::make_unique<benchmark::JSONReporter>();
      json->SetOutputStream(&json_file);
      json->SetErrorStream(&json_file);
      reporter.also_report_to(json.get());
    }
    benchmark::AddCustomContext("flatgather_rounds", std::to_string(runs));
    const unsigned seed = std::random_device{}();
    std::fprintf(stderr, "flatgather-bench: %d rounds in random order (seed %u)\n", runs, seed);
    std::mt19937_64 rng(seed);
    for (int round = 1; round <= runs; ++round) {
      if (round > 1) reporter.begin_round();
      // Every round prepares, checks and warms up its methods afresh (and says so).
      if (Workload* w = resident_workload()) w->methods.clear();
      register_all(shuffled(entries, rng), filter,
                   "round " + std::to_string(round) + "/" + std::to_string(runs) + ": ");
      benchmark::RunSpecifiedBenchmarks(&reporter);
    }
    if (json) json->Finalize();
  }
  release_workload();
  const Summary summary(reporter.rounds(), devices, suites, cuda_skip);
  bool any = false;
  for (const Results& round : reporter.rounds()) any = any || !round.empty();
  if (any) {
    std::ostream& out = format == "console" ? std::cout : std::cerr;
    summary.print_text(out);
    out.flush();
    if (summary_file.is_open()) {
      summary.print_markdown(summary_file);
      std::fprintf(stderr, "flatgather-bench: summary written to %s\n", summary_path.c_str());
    }
  }
  benchmark::Shutdown();
  // A wrong answer (any method) or a failure of ours fails the run (CI's smoke test relies on
  // it); a peer that throws (a size its LibTorch cannot handle, say) is reported, not fatal.
  for (const Results& round : reporter.rounds()) {
    for (const auto& [name, result] : round) {
      if (result.error.empty()) continue;
      const std::string method = name.substr(name.find_last_of('/') + 1);
      for (const MethodSpec& m : method_table()) {
        if (m.name != method) continue;
        const bool ours = m.role != Role::Peer && m.role != Role::Roofline;
        if (result.error.rfind("wrong result", 0) == 0 || ours) return 1;
      }
    }
  }
  return 0;
}

#pragma once
// The summary of flatgather-bench: per op and device, one row per suite with ours, the best
// peer and the roofline, taken from the medians Google Benchmark reports. Printed on the
// console, optionally written as Markdown; with --runs N, one row holds the median of the
// rounds' ratios and their spread.

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "methods.h"

namespace fgbench {

/// One benchmark's outcome in one round.
struct Result {
  double bytes_per_second = 0;
  double threads = 0;
  bool ok = false;
  std::string error;
  bool from_median = false;
};

/// Results of one round, by benchmark name.
using Results = std::map<std::string, Result>;

/// Display reporter: collects every round's results for the summary and forwards to the
/// console (or JSON/CSV) reporter. Quiet mode forwards only the context (machine, caches,
/// Google Benchmark's warnings): the per-benchmark progress lines on stderr and the summary
/// are the whole output. Right after Google Benchmark's "Library was built as DEBUG"
/// warning it says, once, where that comes from.
class SummaryReporter final : public benchmark::BenchmarkReporter {
 public:
  SummaryReporter(std::unique_ptr<benchmark::BenchmarkReporter> display, bool quiet);

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

  /// Also sends the context (once) and every run to `file`, which the caller finalizes:
  /// --runs's one JSON document over all rounds.
  void also_report_to(benchmark::BenchmarkReporter* file) { file_ = file; }
  /// Starts a new round (the first is started by the constructor).
  void begin_round();
  const std::vector<Results>& rounds() const { return rounds_; }

 private:
  void collect(const Run& run);

  std::unique_ptr<benchmark::BenchmarkReporter> display_;
  bool quiet_;
  benchmark::BenchmarkReporter* file_ = nullptr;
  bool context_reported_ = false;
  std::vector<Results> rounds_;
};

/// The summary's rows for every op and device that ran; each ratio is taken within one
/// round, and over several rounds the median of those ratios is shown with its range.
struct SummaryTable;
class Summary {
 public:
  Summary(const std::vector<Results>& rounds, const std::vector<Dev>& devices,
          const std::vector<Suite>& suites, std::string cuda_skip_reason);
  ~Summary();

  /// Fixed-width tables and the legend, for the console.
  void print_text(std::ostream& out) const;
  /// The same as Markdown (--summary_out).
  void print_markdown(std::ostream& out) const;

 private:
  std::vector<SummaryTable> tables_;
  std::size_t rounds_ = 1;
  std::string cuda_skip_reason_;
};

}  // namespace fgbench

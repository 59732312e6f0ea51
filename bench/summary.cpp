// The summary table of flatgather-bench (see summary.h).
#include "summary.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

#ifndef FGBENCH_GBENCH_VERSION
#define FGBENCH_GBENCH_VERSION 107
#endif
#ifndef FGBENCH_BUILD_TYPE
#define FGBENCH_BUILD_TYPE ""
#endif

namespace fgbench {

// ---- the reporter -----------------------------------------------------------------------------

namespace {

// Said once, right after Google Benchmark's own warning.
std::string debug_warning_note() {
  const std::string type = FGBENCH_BUILD_TYPE;
  std::string ours;
  if (type == "Release" || type == "RelWithDebInfo" || type == "MinSizeRel") {
    ours = "flatgather-bench itself is a " + type + " build";
  } else if (type.empty()) {
    ours =
        "flatgather-bench itself was built without a CMAKE_BUILD_TYPE (no optimisation "
        "flags): configure with -DCMAKE_BUILD_TYPE=Release for meaningful timings";
  } else {
    ours = "flatgather-bench itself is a " + type +
           " build: configure with -DCMAKE_BUILD_TYPE=Release for meaningful timings";
  }
  return "(flatgather-bench: that warning is about Debian's Google Benchmark package "
         "(libbenchmark), built without NDEBUG; " +
         ours + ".)\n";
}

}  // namespace

SummaryReporter::SummaryReporter(std::unique_ptr<benchmark::BenchmarkReporter> display, bool quiet)
    : display_(std::move(display)), quiet_(quiet), rounds_(1) {}

bool SummaryReporter::ReportContext(const Context& context) {
  // Google Benchmark calls this once per RunSpecifiedBenchmarks; --runs calls that per round.
  if (context_reported_) return true;
  context_reported_ = true;
  if (file_) file_->ReportContext(context);
  // The context goes to the display's error stream; read it back to place the note.
  std::ostringstream captured;
  std::ostream& err = display_->GetErrorStream();
  display_->SetErrorStream(&captured);
  const bool ok = display_->ReportContext(context);
  display_->SetErrorStream(&err);
  std::istringstream lines(captured.str());
  bool noted = false;
  for (std::string line; std::getline(lines, line);) {
    err << line << '\n';
    if (!noted && line.find("Library was built as DEBUG") != std::string::npos) {
      err << debug_warning_note();
      noted = true;
    }
  }
  err.flush();
  return ok;
}

void SummaryReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& run : runs) collect(run);
  if (file_) file_->ReportRuns(runs);
  if (!quiet_) display_->ReportRuns(runs);
}

void SummaryReporter::Finalize() {
  display_->Finalize();
}

void SummaryReporter::begin_round() {
  rounds_.emplace_back();
}

void SummaryReporter::collect(const Run& run) {
  const std::string name = run.run_name.str();
  Result& r = rounds_.back()[name];
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

// ---- the tables -------------------------------------------------------------------------------

/// A ratio over the rounds: the median and the range (one round: all three equal).
struct Spread {
  double median = 0, low = 0, high = 0;  // 0: no value
};

struct SummaryRow {
  std::string suite;
  std::size_t tensors = 0;
  double mb = 0;
  double ours = 0, checked = 0, best = 0;  // GB/s, medians over the rounds; 0: none
  std::string best_name = "-";             // the peer most often best
  Spread ours_peer, ours_roof;
};

struct SummaryTable {
  std::string heading;  // "gather on cpu (CPU name, 2 threads)"
  std::vector<SummaryRow> rows;
  std::vector<std::string> notes;  // GPU-only peers, not run, ERROR lines
};

namespace {

double median_of(std::vector<double> v) {
  v.erase(std::remove(v.begin(), v.end(), 0.0), v.end());
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Spread spread_of(std::vector<double> v) {
  v.erase(std::remove(v.begin(), v.end(), 0.0), v.end());
  if (v.empty()) return {};
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return {median_of(v), *lo, *hi};
}

std::string gbps(double bytes_per_second) {
  if (bytes_per_second <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes_per_second / 1e9);
  return buf;
}

std::string ratio(double r) {
  if (r <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", r);
  return buf;
}

std::string range(const Spread& s) {
  if (s.median <= 0) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f-%.2f", s.low, s.high);
  return buf;
}

std::string peer_cell(const SummaryRow& row) {
  return row.best > 0 ? row.best_name + " (" + gbps(row.best) + ")" : "-";
}

// One round's figures for one (op, device, suite).
struct RoundRow {
  double ours = 0, checked = 0, best = 0, roof = 0;
  std::string best_name;
};

RoundRow round_row(const Results& results, const std::string& base,
                   const std::vector<const MethodSpec*>& methods, double* threads) {
  RoundRow row;
  for (const MethodSpec* m : methods) {
    auto it = results.find(base + m->name);
    if (it == results.end() || !it->second.ok) continue;
    const Result& r = it->second;
    switch (m->role) {
      case Role::Ours:
        row.ours = r.bytes_per_second;
        *threads = r.threads;
        break;
      case Role::OursChecked: row.checked = r.bytes_per_second; break;
      case Role::Roofline: row.roof = r.bytes_per_second; break;
      case Role::Variant: break;
      case Role::Peer:
        if (r.bytes_per_second > row.best) {
          row.best = r.bytes_per_second;
          row.best_name = m->name;
        }
        break;
    }
  }
  return row;
}

std::string gpu_only_peers() {
  std::string names;
  for (const MethodSpec& m : method_table()) {
    if (m.gpu_peer) names += (names.empty() ? "" : ", ") + std::string(m.name);
  }
  return names;
}

}  // namespace

Summary::Summary(const std::vector<Results>& rounds, const std::vector<Dev>& devices,
                 const std::vector<Suite>& suites, std::string cuda_skip_reason)
    : rounds_(rounds.size()), cuda_skip_reason_(std::move(cuda_skip_reason)) {
  for (Dev dev : devices) {
    for (BenchOp op : kAllOps) {
      const std::string prefix = std::string(op_name(op)) + "/" + dev_name(dev) + "/";
      SummaryTable table;
      double threads = 0;
      std::map<std::string, std::pair<std::string, std::set<std::string>>> unavailable;
      std::vector<std::string> errors;
      for (const Suite& suite : suites) {
        if (suite.gpu_only && dev == Dev::CPU) continue;
        std::vector<Unavailable> missing;
        const std::vector<const MethodSpec*> methods = methods_for(op, dev, suite, &missing);
        const std::string base = prefix + suite.name + "/";
        bool any = false;
        for (std::size_t k = 0; k < rounds.size(); ++k) {
          for (const MethodSpec* m : methods) {
            auto it = rounds[k].find(base + m->name);
            if (it == rounds[k].end()) continue;
            any = true;
            if (!it->second.error.empty()) {
              const std::string round =
                  rounds.size() > 1 ? " (round " + std::to_string(k + 1) + ")" : "";
              errors.push_back(base + m->name + round + ": " + it->second.error);
            }
          }
        }
        if (!any) continue;
        for (const Unavailable& u : missing) {
          auto& entry = unavailable[u.method];
          entry.first = u.reason;
          entry.second.insert(suite.name);
        }
        std::vector<double> ours, checked, best, ours_peer, ours_roof;
        std::map<std::string, int> best_count;
        for (const Results& results : rounds) {
          const RoundRow r = round_row(results, base, methods, &threads);
          ours.push_back(r.ours);
          checked.push_back(r.checked);
          best.push_back(r.best);
          if (r.best > 0) ++best_count[r.best_name];
          // Each ratio within one round (NOTE: the rounds' machine state differs).
          ours_peer.push_back(r.ours > 0 && r.best > 0 ? r.ours / r.best : 0);
          ours_roof.push_back(r.ours > 0 && r.roof > 0 ? r.ours / r.roof : 0);
        }
        SummaryRow row;
        row.suite = suite.name;
        row.tensors = suite.tensors.size();
        row.mb = static_cast<double>(suite.tensor_bytes()) / 1e6;
        row.ours = median_of(ours);
        row.checked = median_of(checked);
        row.best = median_of(best);
        int most = 0;
        for (const auto& [name, count] : best_count) {
          if (count > most) {
            most = count;
            row.best_name = name;
          }
        }
        row.ours_peer = spread_of(ours_peer);
        row.ours_roof = spread_of(ours_roof);
        table.rows.push_back(std::move(row));
      }
      if (table.rows.empty()) continue;
      table.heading =
          std::string(op_name(op)) + " on " + dev_name(dev) + " (" + device_description(dev);
      if (dev == Dev::CPU && threads > 0) {
        table.heading += ", " + std::to_string(static_cast<int>(threads)) +
                         (threads == 1 ? " thread" : " threads");
      }
      table.heading += ")";
      if (dev == Dev::CPU) {
        table.notes.push_back("GPU-only peers (" + gpu_only_peers() + ") run only on cuda.");
      }
      for (const auto& [method, entry] : unavailable) {
        std::string which;
        for (const std::string& s : entry.second) which += (which.empty() ? "" : ", ") + s;
        table.notes.push_back("not run: " + method + " (" + entry.first + ") for " + which);
      }
      for (const std::string& e : errors) table.notes.push_back("ERROR " + e);
      tables_.push_back(std::move(table));
    }
  }
}

Summary::~Summary() = default;

namespace {

// Under the tables: what the columns mean; the last two lines are the legend issue 23 asked
// for (docs/perf.md, "What a ratio above the roofline means here", says more).
const char* const kLegend[] = {
    "MB: bytes of the tensors (--list-suites). Ratios are within one run; docs/perf.md explains.",
    "ours/roof > 1: ours outran one plain copy of the same bytes, a reference copy, not a limit.",
    "checked: ours with check_tensors=true, run on suites of 1,000+ tensors only (\"-\": not run).",
};

std::string title(std::size_t rounds) {
  std::string t = "flatgather-bench summary: medians, GB/s = (bytes read + bytes written) / s";
  if (rounds > 1) {
    t += "; each figure the median over " + std::to_string(rounds) +
         " rounds in random order, range = lowest-highest";
  }
  return t;
}

}  // namespace

void Summary::print_text(std::ostream& out) const {
  out << "\n==== " << title(rounds_) << " ====\n";
  if (!cuda_skip_reason_.empty()) out << "cuda: not run (" << cuda_skip_reason_ << ")\n";
  const bool multi = rounds_ > 1;
  char line[512];
  for (const SummaryTable& table : tables_) {
    out << "\n" << table.heading << "\n";
    std::snprintf(line, sizeof line, "%-12s %8s %10s %10s %10s  %-28s %9s", "suite", "tensors",
                  "MB", "ours GB/s", "checked", "best peer (GB/s)", "ours/peer");
    out << line << (multi ? "     range" : "");
    std::snprintf(line, sizeof line, " %9s", "ours/roof");
    out << line << (multi ? "     range" : "") << "\n";
    for (const SummaryRow& row : table.rows) {
      std::snprintf(line, sizeof line, "%-12s %8zu %10.2f %10s %10s  %-28s %9s", row.suite.c_str(),
                    row.tensors, row.mb, row.ours > 0 ? gbps(row.ours).c_str() : "error",
                    gbps(row.checked).c_str(), peer_cell(row).c_str(),
                    ratio(row.ours_peer.median).c_str());
      out << line;
      if (multi) {
        std::snprintf(line, sizeof line, " %9s", range(row.ours_peer).c_str());
        out << line;
      }
      std::snprintf(line, sizeof line, " %9s", ratio(row.ours_roof.median).c_str());
      out << line;
      if (multi) {
        std::snprintf(line, sizeof line, " %9s", range(row.ours_roof).c_str());
        out << line;
      }
      out << "\n";
    }
    for (const std::string& note : table.notes) out << note << "\n";
  }
  out << "\n";
  for (const char* legend : kLegend) out << legend << "\n";
}

void Summary::print_markdown(std::ostream& out) const {
  out << "# " << title(rounds_) << "\n";
  if (!cuda_skip_reason_.empty()) out << "\ncuda: not run (" << cuda_skip_reason_ << ")\n";
  const bool multi = rounds_ > 1;
  for (const SummaryTable& table : tables_) {
    out << "\n## " << table.heading << "\n\n";
    out << "| suite | tensors | MB | ours GB/s | checked | best peer (GB/s) | ours/peer |"
        << (multi ? " range |" : "") << " ours/roof |" << (multi ? " range |" : "") << "\n";
    out << "|---|---:|---:|---:|---:|---|---:|" << (multi ? "---:|" : "") << "---:|"
        << (multi ? "---:|" : "") << "\n";
    for (const SummaryRow& row : table.rows) {
      char mb[32];
      std::snprintf(mb, sizeof mb, "%.2f", row.mb);
      out << "| " << row.suite << " | " << row.tensors << " | " << mb << " | "
          << (row.ours > 0 ? gbps(row.ours) : "error") << " | " << gbps(row.checked) << " | "
          << peer_cell(row) << " | " << ratio(row.ours_peer.median) << " |"
          << (multi ? " " + range(row.ours_peer) + " |" : "") << " " << ratio(row.ours_roof.median)
          << " |" << (multi ? " " + range(row.ours_roof) + " |" : "") << "\n";
    }
    if (!table.notes.empty()) out << "\n";
    for (const std::string& note : table.notes) out << "- " << note << "\n";
  }
  out << "\n";
  for (const char* legend : kLegend) out << legend << "\n";
}

}  // namespace fgbench

// ftsync benchmark: speculative state transfer on the in-memory domain.
//
// Each seeded FakeDomain workload runs epoch after epoch, each epoch cut
// into ticks. At every tick the driver peeks at the dirty log, asks the
// speculation policy what to send, re-arms those pages and reads them
// (RearmDirty, then ReadFrames: the order hypervisor.h prescribes); at the
// epoch's end it fetches the dirty log as the checkpointer does. Every
// policy runs on its own domain and workload built from the same seed, so
// all policies see exactly the same guest writes; "none" is the baseline
// (Remus: every dirty page whole, at the epoch's end).
//
// Each configuration keeps a replica (speculative copies applied, then the
// final pages) and checks after every epoch that it equals the primary's
// memory: speculation must never lose a write.
//
// Output: a table of ratios against the baseline of the same run, and
// bench/results/spec_sim.json (or --json PATH). See bench/spec/README.md.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../report.h"
#include "ftsync/dirty_bitmap.h"
#include "spec/speculation_policy.h"
#include "testing/fake_domain.h"
#include "testing/workload.h"

namespace ftsync::bench {
namespace {

using internal::SpeculationOptions;
using internal::SpeculationPolicy;
using internal::SpeculationPolicyKind;
using internal::SpeculationStats;
using testing::FakeDomain;
using testing::Workload;
using testing::WorkloadKind;
using testing::WorkloadParams;

struct Config {
  std::string name;
  SpeculationOptions options;
};

struct SimParams {
  uint64_t frames = 4096;  // 16 MiB of 4 KiB pages
  size_t page = 4096;
  uint32_t ticks = 10;
  uint64_t epochs = 200;
  uint64_t seed = 42;
};

// Guest writes per tick and workload parameters: chosen so that the hot
// workload's hot pages are written about once per tick (the case where
// early sending turns into a resend storm) and the others write 0.4%..1%
// of memory per tick.
WorkloadParams ParamsFor(WorkloadKind kind) {
  WorkloadParams p;
  p.hot_percent = 1;  // 40 hot pages of 4096
  switch (kind) {
    case WorkloadKind::kHotPages: p.writes_per_step = 48; break;
    case WorkloadKind::kMixed: p.writes_per_step = 48; break;
    default: p.writes_per_step = 16; break;
  }
  return p;
}

struct Result {
  SpeculationStats stats;
  double max_window_ratio = 0;
  bool replica_ok = true;
  uint64_t first_bad_epoch = 0;
};

Result RunOne(WorkloadKind kind, const Config& cfg, const SimParams& sp) {
  Result r;
  FakeDomain d(sp.frames, sp.page, "sim", sp.seed);
  Workload w(kind, sp.seed * 7 + 1, ParamsFor(kind));
  std::vector<uint8_t> replica = d.memory();
  SpeculationOptions o = cfg.options;
  o.ticks_per_epoch = sp.ticks;
  o.page_size = sp.page;
  auto created = SpeculationPolicy::Create(sp.frames, o);
  if (!created.ok()) {
    std::fprintf(stderr, "spec_sim: %s\n", created.status().ToString().c_str());
    std::exit(1);
  }
  SpeculationPolicy& policy = **created;
  auto must = [](const Status& s, const char* what) {
    if (!s.ok()) {
      std::fprintf(stderr, "spec_sim: %s: %s\n", what, s.ToString().c_str());
      std::exit(1);
    }
  };
  auto copy_in = [&](std::span<const uint64_t> pfns) {
    if (pfns.empty()) return;
    std::vector<uint8_t> buf(pfns.size() * sp.page);
    std::vector<int> errors(pfns.size());
    must(d.ReadFrames(pfns, buf.data(), errors), "ReadFrames");
    for (size_t i = 0; i < pfns.size(); ++i) {
      std::memcpy(replica.data() + pfns[i] * sp.page, buf.data() + i * sp.page, sp.page);
    }
  };
  must(d.EnableDirtyLog(), "EnableDirtyLog");
  DirtyBitmap peek, final_dirty;
  std::vector<uint64_t> pfns;
  for (uint64_t e = 0; e < sp.epochs; ++e) {
    must(policy.BeginEpoch(), "BeginEpoch");
    for (uint32_t t = 1; t <= sp.ticks; ++t) {
      must(w.Step(&d), "workload");  // the guest's writes of this tick
      if (t == sp.ticks) break;
      must(d.PeekDirty(&peek), "PeekDirty");
      auto send = policy.Tick(t, peek);
      must(send.status(), "Tick");
      must(d.RearmDirty(*send), "RearmDirty");
      copy_in(*send);
    }
    must(d.Suspend(), "Suspend");
    must(d.FetchAndClearDirty(&final_dirty), "FetchAndClearDirty");
    pfns.clear();
    final_dirty.AppendSetBits(&pfns);
    copy_in(pfns);
    must(policy.EndEpoch(final_dirty), "EndEpoch");
    must(d.Resume(), "Resume");
    if (r.replica_ok && replica != d.memory()) {
      r.replica_ok = false;
      r.first_bad_epoch = e;
    }
    if (e + 1 >= o.budget_window) {
      r.max_window_ratio = std::max(r.max_window_ratio, policy.WindowRatio());
    }
  }
  r.stats = policy.totals();
  return r;
}

int Main(int argc, char** argv) {
  std::string json_path = "bench/results/spec_sim.json";
  SimParams sp;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "spec_sim: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") {
      json_path = next();
    } else if (a == "--epochs") {
      sp.epochs = std::stoull(next());
    } else if (a == "--ticks") {
      sp.ticks = uint32_t(std::stoul(next()));
    } else if (a == "--seed") {
      sp.seed = std::stoull(next());
    } else {
      std::fprintf(stderr,
                   "usage: spec_sim [--json PATH] [--epochs N] [--ticks N] [--seed N]\n");
      return 2;
    }
  }

  std::vector<Config> configs;
  configs.push_back({"none", internal::DefaultSpeculationOptions(SpeculationPolicyKind::kNone)});
  configs.push_back({"eager", internal::DefaultSpeculationOptions(SpeculationPolicyKind::kEager)});
  Config eb{"eager+budget", internal::DefaultSpeculationOptions(SpeculationPolicyKind::kEager)};
  eb.options.budget_ratio = 1.2;
  configs.push_back(eb);
  Config hn{"history-nobudget",
            internal::DefaultSpeculationOptions(SpeculationPolicyKind::kHistory)};
  hn.options.budget_ratio = 0;
  configs.push_back(hn);
  configs.push_back(
      {"history", internal::DefaultSpeculationOptions(SpeculationPolicyKind::kHistory)});
  configs.push_back({"fill", internal::DefaultSpeculationOptions(SpeculationPolicyKind::kFill)});

  PrintSection("Speculative transfer on the in-memory domain");
  PrintNote(std::to_string(sp.frames) + " frames of " + std::to_string(sp.page) + " B, " +
            std::to_string(sp.epochs) + " epochs of " + std::to_string(sp.ticks) +
            " ticks, seed " + std::to_string(sp.seed) + "; ratios against 'none' (every " +
            "dirty page at the epoch's end) of the same run");
  PrintNote("end = pages left at epoch ends / baseline (lower is better); total = all pages "
            "sent incl. speculative / baseline (history, fill budget: <= 1.20x)");

  Json root = Json::Object();
  root.Set("benchmark", "spec_sim");
  root.Set("date", UtcNow());
  root.Set("frames", sp.frames);
  root.Set("page_size", uint64_t(sp.page));
  root.Set("epochs", sp.epochs);
  root.Set("ticks_per_epoch", uint64_t(sp.ticks));
  root.Set("seed", sp.seed);
  Json results = Json::Array();
  bool all_ok = true;
  bool history_within_budget = true;

  Table table({"workload", "policy", "baseline pg/ep", "end", "end factor", "total",
               "wasted/ep", "max window", "replica"});
  for (WorkloadKind kind : testing::AllWorkloadKinds()) {
    const std::string wname = testing::WorkloadName(kind);
    uint64_t baseline = 0;
    for (const Config& cfg : configs) {
      Result r = RunOne(kind, cfg, sp);
      const SpeculationStats& s = r.stats;
      if (cfg.name == "none") baseline = s.final_pages;
      // Every configuration sees the same writes: the same baseline.
      if (s.baseline_pages != baseline) {
        std::fprintf(stderr, "spec_sim: %s/%s: baseline %llu differs from none's %llu\n",
                     wname.c_str(), cfg.name.c_str(), (unsigned long long)s.baseline_pages,
                     (unsigned long long)baseline);
        all_ok = false;
      }
      all_ok = all_ok && r.replica_ok;
      const double base = double(std::max<uint64_t>(baseline, 1));
      const double end = double(s.final_pages) / base;
      const double total = double(s.total_pages()) / base;
      if ((cfg.name == "history" || cfg.name == "fill") && total > 1.2)
        history_within_budget = false;
      table.AddRow({wname, cfg.name, Fixed(double(baseline) / double(sp.epochs), 1),
                    Ratio(end), end > 0 ? Fixed(1.0 / end, 1) + "x" : "inf",
                    Ratio(total), Fixed(double(s.wasted_sends) / double(sp.epochs), 1),
                    Ratio(r.max_window_ratio),
                    r.replica_ok ? "ok" : "DIFFERS@" + std::to_string(r.first_bad_epoch)});
      Json j = Json::Object();
      j.Set("workload", wname);
      j.Set("policy", cfg.name);
      j.Set("budget_ratio", cfg.options.budget_ratio);
      j.Set("baseline_pages", baseline);
      j.Set("final_pages", s.final_pages);
      j.Set("speculative_sends", s.speculative_sends);
      j.Set("wasted_sends", s.wasted_sends);
      j.Set("saved_pages", s.saved_pages);
      j.Set("throttled_pages", s.throttled_pages);
      j.Set("total_pages", s.total_pages());
      j.Set("end_ratio", Round(end, 4));
      j.Set("end_factor", end > 0 ? Json(Round(1.0 / end, 2)) : Json::Null());
      j.Set("total_ratio", Round(total, 4));
      j.Set("max_window_ratio", Round(r.max_window_ratio, 4));
      j.Set("replica_equals_primary", r.replica_ok);
      results.Push(j);
    }
  }
  table.Print();
  root.Set("results", results);
  root.Set("replicas_ok", all_ok);
  root.Set("adaptive_total_within_1_2x", history_within_budget);
  FILE* f = std::fopen(json_path.c_str(), "w");
  if (f == nullptr) {
    std::perror(json_path.c_str());
    return 1;
  }
  std::string text = root.Dump() + "\n";
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  PrintNote("written " + json_path);
  if (!all_ok) {
    std::fprintf(stderr, "spec_sim: a replica differed from its primary or baselines differ\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ftsync::bench

int main(int argc, char** argv) { return ftsync::bench::Main(argc, argv); }

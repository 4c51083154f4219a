// Speculation policies for the workload benchmark (spec_drivers.h).
#include "spec_drivers.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "spec/speculation_policy.h"

namespace ftsync::wl {
namespace {
using namespace internal;

// Drives one libftsync SpeculationPolicy as a re-arming backend would: the
// peek at tick t holds every page written since the epoch began, less the
// pages sent (re-armed) and not written since; the final set is the same at
// the epoch's end. Exact bytes of the epoch feed the policy's budget.
class LibraryDriver : public SpecDriver {
 public:
  explicit LibraryDriver(std::unique_ptr<SpeculationPolicy> p, uint64_t frames)
      : policy_(std::move(p)), peek_(frames), final_(frames) {}
  void OnTick(int tick, int, std::span<const uint64_t> written, std::vector<uint64_t>* send) override {
    if (!policy_->in_epoch()) Must(policy_->BeginEpoch(), "BeginEpoch");
    for (uint64_t p : written) peek_.Set(p);
    auto r = policy_->Tick(static_cast<uint32_t>(tick + 1), peek_);
    Must(r.status(), "Tick");
    for (uint64_t p : r.value()) {
      peek_.Clear(p);  // re-armed
      send->push_back(p);
    }
  }
  void OnEpochEnd(std::span<const uint64_t> final_pages, uint64_t baseline, uint64_t spec,
                  uint64_t fin) override {
    if (!policy_->in_epoch()) Must(policy_->BeginEpoch(), "BeginEpoch");
    final_.ClearAll();
    for (uint64_t p : final_pages) final_.Set(p);
    EpochBytes b{baseline, spec, fin};
    Must(policy_->EndEpoch(final_, nullptr, &b), "EndEpoch");
    peek_.ClearAll();
  }

 private:
  static void Must(const Status& s, const char* what) {
    if (s.ok()) return;
    std::fprintf(stderr, "ftsync_workload_eval: speculation policy %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
  std::unique_ptr<SpeculationPolicy> policy_;
  DirtyBitmap peek_, final_;
};

class EagerTestDriver : public SpecDriver {
 public:
  void OnTick(int, int, std::span<const uint64_t> written, std::vector<uint64_t>* send) override {
    send->insert(send->end(), written.begin(), written.end());
  }
  void OnEpochEnd(std::span<const uint64_t>, uint64_t, uint64_t, uint64_t) override {}
};

}  // namespace

std::vector<SpecPolicyFactory> LibraryPolicies() {
  std::vector<SpecPolicyFactory> out;
  // "history" first: the combined configurations use the first policy.
  std::vector<SpeculationPolicyKind> kinds = AllSpeculationPolicies();
  std::stable_partition(kinds.begin(), kinds.end(),
                        [](SpeculationPolicyKind k) { return k == SpeculationPolicyKind::kHistory; });
  for (SpeculationPolicyKind kind : kinds) {
    if (kind == SpeculationPolicyKind::kNone) continue;  // the non-speculative lanes
    out.push_back({SpeculationPolicyName(kind), [kind](uint64_t frames, int ticks) {
                     SpeculationOptions o = DefaultSpeculationOptions(kind);
                     o.ticks_per_epoch = static_cast<uint32_t>(ticks);
                     auto p = SpeculationPolicy::Create(frames, o);
                     if (!p.ok()) {
                       std::fprintf(stderr, "ftsync_workload_eval: speculation policy: %s\n",
                                    p.status().ToString().c_str());
                       std::abort();
                     }
                     return std::unique_ptr<SpecDriver>(new LibraryDriver(std::move(p).value(), frames));
                   }});
  }
  return out;
}

SpecPolicyFactory TestOnlyPolicy() {
  return {"test-eager", [](uint64_t, int) { return std::unique_ptr<SpecDriver>(new EagerTestDriver()); }};
}

}  // namespace ftsync::wl

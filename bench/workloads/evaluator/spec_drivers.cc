// Speculation policies for the workload benchmark (spec_drivers.h).
#include "spec_drivers.h"

namespace ftsync::wl {
namespace {

class EagerTestDriver : public SpecDriver {
 public:
  void OnTick(int, int, std::span<const uint64_t> written, std::vector<uint64_t>* send) override {
    send->insert(send->end(), written.begin(), written.end());
  }
  void OnEpochEnd(std::span<const uint64_t>, std::span<const uint64_t>) override {}
};

}  // namespace

std::vector<SpecPolicyFactory> LibraryPolicies() { return {}; }

SpecPolicyFactory TestOnlyPolicy() {
  return {"test-eager", [](uint64_t, int) { return std::unique_ptr<SpecDriver>(new EagerTestDriver()); }};
}

}  // namespace ftsync::wl

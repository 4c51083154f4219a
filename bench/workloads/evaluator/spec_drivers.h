// The speculation policies the workload benchmark drives: adapters from
// libftsync's policies (libftsync/src/spec/) to the engine's SpecDriver.
#ifndef FTSYNC_BENCH_WORKLOADS_EVALUATOR_SPEC_DRIVERS_H_
#define FTSYNC_BENCH_WORKLOADS_EVALUATOR_SPEC_DRIVERS_H_

#include <vector>

#include "engine.h"

namespace ftsync::wl {

// One factory per policy of libftsync (empty if the library has none).
std::vector<SpecPolicyFactory> LibraryPolicies();

// For the synthetic self-check only, not a policy: sends at every tick the
// pages written during it ("test-eager"), which exercises every path of the
// engine's speculative simulation (sent, spared, rewritten).
SpecPolicyFactory TestOnlyPolicy();

}  // namespace ftsync::wl

#endif  // FTSYNC_BENCH_WORKLOADS_EVALUATOR_SPEC_DRIVERS_H_

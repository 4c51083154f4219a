// ftsync testing: scripted guest workloads for a FakeDomain.
//
// A Workload writes guest memory the way a class of real guests does, one
// epoch's worth per Step(). Everything it does is a function of its kind,
// seed, params and the domain's contents: the same seed on equal domains
// gives equal memory after any number of steps, on every platform (it uses
// its own splitmix64 generator, not <random>'s distributions, whose output
// differs between standard libraries).
//
//   kind               name        per write
//   kSequentialWriter  sequential  next frame after the previous one
//                                  (wrapping), whole page of new bytes
//   kHotPages          hot         a frame of a fixed hot set (hot_percent
//                                  of frames), cold_percent of writes to any
//                                  frame; a run of 8..PageSize()/2 bytes
//   kSparseRandom      sparse      a uniformly random frame, whole page
//   kSubPageScribbles  scribble    a random frame, 1..max_scribble bytes at
//                                  a random offset; every byte changes
//   kZeroPages         zero        a random frame cleared to all zero, or
//                                  (refill_percent of writes) refilled with
//                                  random bytes
//   kMixed             mixed       each write one of the above, weighted
//                                  hot 35, scribble 25, sparse 15,
//                                  sequential 15, zero 10
//
// Within one Step the sparse, scribble and zero kinds touch distinct frames
// (at most FrameCount() of them), so each touched frame's final contents
// are those of its single write; sequential does too unless
// writes_per_step > FrameCount().
#ifndef FTSYNC_TESTING_WORKLOAD_H_
#define FTSYNC_TESTING_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ftsync/status.h"
#include "testing/fake_domain.h"

namespace ftsync::testing {

enum class WorkloadKind {
  kSequentialWriter,
  kHotPages,
  kSparseRandom,
  kSubPageScribbles,
  kZeroPages,
  kMixed,
};

// "sequential", "hot", "sparse", "scribble", "zero", "mixed".
std::string WorkloadName(WorkloadKind kind);
// The inverse of WorkloadName; kInvalidArgument naming `name` and the
// accepted names otherwise.
Result<WorkloadKind> ParseWorkloadKind(std::string_view name);
// Every kind, in declaration order (for test and benchmark matrices).
std::vector<WorkloadKind> AllWorkloadKinds();

struct WorkloadParams {
  uint64_t writes_per_step = 64;  // guest writes per Step
  uint32_t hot_percent = 5;       // hot set size, % of frames (at least 1)
  uint32_t cold_percent = 10;     // hot: % of writes to a random frame
  size_t max_scribble = 64;       // scribble: longest write, bytes (>= 1)
  uint32_t refill_percent = 25;   // zero: % of writes that refill a page
};

// One guest write made by the last Step.
struct WorkloadWrite {
  uint64_t pfn;
  size_t offset;
  size_t length;
  bool zeroed;  // the write cleared the whole frame to zero
};

class Workload {
 public:
  Workload(WorkloadKind kind, uint64_t seed, WorkloadParams params = {});

  // Performs one epoch's worth of guest writes on `d`. Returns the first
  // failing write's status (e.g. kFailedPrecondition when `d` is
  // suspended), after which the step stops. kInvalidArgument for a null
  // domain, bad params (hot_percent or cold_percent or refill_percent over
  // 100, hot_percent or max_scribble zero) or a domain whose frame count
  // differs from the one the first Step saw.
  Status Step(FakeDomain* d);

  WorkloadKind kind() const { return kind_; }
  // The hot set (sorted, distinct); empty until the first Step.
  const std::vector<uint64_t>& hot_set() const { return hot_set_; }
  // The writes of the last Step, in order (up to the failure, if any).
  const std::vector<WorkloadWrite>& last_step() const { return last_; }
  uint64_t steps() const { return steps_; }

 private:
  uint64_t Next();
  uint64_t Below(uint64_t n);  // uniform in [0, n), n > 0
  Status Setup(uint64_t frames);
  // Picks `count` distinct frames of `frames` uniformly at random.
  std::vector<uint64_t> DistinctFrames(uint64_t count, uint64_t frames);
  Status WriteOne(FakeDomain* d, WorkloadKind kind, uint64_t pfn);

  const WorkloadKind kind_;
  const WorkloadParams params_;
  uint64_t rng_;
  uint64_t frames_ = 0;  // 0 until the first Step
  uint64_t cursor_ = 0;  // next frame of the sequential writer
  uint64_t steps_ = 0;
  std::vector<uint64_t> hot_set_;
  std::vector<WorkloadWrite> last_;
  std::vector<uint8_t> buf_;
};

}  // namespace ftsync::testing

#endif  // FTSYNC_TESTING_WORKLOAD_H_

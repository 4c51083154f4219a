// ftsync benchmarks: the measurements of `make bench`, one function each.
//
// Each function prints its section of the table to stdout as it goes and
// returns the same figures as a JSON object. Every headline figure is a
// ratio to a baseline (memcpy, hashing, memcmp) measured in the same run:
// see bench/README.md for what each one means.
#ifndef FTSYNC_BENCH_BENCHMARKS_H_
#define FTSYNC_BENCH_BENCHMARKS_H_

#include <cstddef>
#include <cstdint>

#include "report.h"

namespace ftsync::bench {

constexpr size_t kPageSize = 4096;

struct BenchConfig {
  bool quick = false;  // smaller sizes, for a smoke run
  int reps = 9;        // timed repetitions per micro measurement
  int epochs = 9;      // measured epochs per dirty-page count
  uint64_t seed = 42;  // page choices (splitmix64)
};

// 1. Dirty frames of a FakeDomain copied into a staging area through
//    Domain::ReadFrames, against memcpy of the same bytes.
Json RunStagingBench(const BenchConfig& config);

// 2. Staged pages framed and checksummed as PAGE_DATA records
//    (RecordWriter::PageData) into a discarding sink, against memcpy.
Json RunEncodingBench(const BenchConfig& config);

// 3. Per-epoch paused time of a real Checkpointer and Receiver over
//    MemoryPipe on a FakeDomain, against memcpy of the dirty pages.
Json RunEpochBench(const BenchConfig& config);

// 4. The userfaultfd write-protect / PAGEMAP_SCAN dirty tracker's
//    FetchAndClear, against hashing and comparing every page.
Json RunTrackerBench(const BenchConfig& config);

// Median seconds of memcpy(dst, src, bytes) over config.reps runs (one
// untimed warm-up first). The common baseline of sections 1-3.
double MemcpySeconds(uint8_t* dst, const uint8_t* src, size_t bytes, int reps);

// A page-aligned, pre-faulted buffer (anonymous mmap), freed on
// destruction. Pre-faulting keeps first-touch page faults (expensive on a
// virtual machine) out of every timed region.
class PageBuffer {
 public:
  explicit PageBuffer(size_t bytes, uint8_t fill = 0x5A);
  ~PageBuffer();
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_;
  size_t size_;
};

}  // namespace ftsync::bench

#endif  // FTSYNC_BENCH_BENCHMARKS_H_

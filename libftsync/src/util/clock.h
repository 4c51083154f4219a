// Monotonic time for stats and liveness.
#ifndef FTSYNC_SRC_UTIL_CLOCK_H_
#define FTSYNC_SRC_UTIL_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace ftsync::internal {

inline uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

inline uint64_t MonotonicUs() { return MonotonicNs() / 1000; }

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_UTIL_CLOCK_H_

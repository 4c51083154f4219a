// The shared baselines: pre-faulted buffers and memcpy timing.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "benchmarks.h"
#include "timing.h"

namespace ftsync::bench {

PageBuffer::PageBuffer(size_t bytes, uint8_t fill) : size_(bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "ftsync_bench: mmap of %zu bytes failed\n", bytes);
    std::exit(1);
  }
  data_ = static_cast<uint8_t*>(p);
  std::memset(data_, fill, bytes);
}

PageBuffer::~PageBuffer() { munmap(data_, size_); }

double MemcpySeconds(uint8_t* dst, const uint8_t* src, size_t bytes, int reps) {
  return Median(TimeRepeated(reps, [&] {
    std::memcpy(dst, src, bytes);
    DoNotOptimize(dst[bytes - 1]);
  }));
}

}  // namespace ftsync::bench

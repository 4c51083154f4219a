// ftsync benchmarks: clocks, repetition and medians.
//
// Every figure the benchmark reports is a median of several repetitions,
// and every headline figure is a ratio to a baseline measured in the same
// run, so that a noisy or slow machine moves numerator and denominator
// together.
#ifndef FTSYNC_BENCH_TIMING_H_
#define FTSYNC_BENCH_TIMING_H_

#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ftsync::bench {

// Monotonic time in nanoseconds.
inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Measures one call of `f` in seconds.
template <typename F>
double TimeOnce(F&& f) {
  uint64_t t0 = NowNs();
  f();
  return static_cast<double>(NowNs() - t0) * 1e-9;
}

// Calls `f` once untimed (warms caches and faults pages in), then `reps`
// timed times; returns the per-call times in seconds.
template <typename F>
std::vector<double> TimeRepeated(int reps, F&& f) {
  f();
  std::vector<double> out;
  out.reserve(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) out.push_back(TimeOnce(f));
  return out;
}

// Median of `v` (mean of the two middle values for an even count); 0 for
// an empty vector.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline double Min(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}
inline double Max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// Decimal gigabytes per second.
inline double GBps(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
}

// Keeps the compiler from discarding a computed value.
template <typename T>
inline void DoNotOptimize(const T& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

// splitmix64: a tiny deterministic generator for page choices.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (the modulo bias is irrelevant here).
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t s_;
};

// `count` distinct values of [0, n), in random order (partial
// Fisher-Yates over `scratch`, which is kept between calls so a loop of
// epochs does not reallocate it). Requires count <= n.
inline std::vector<uint64_t> DistinctRandom(Rng* rng, uint64_t count, uint64_t n,
                                            std::vector<uint64_t>* scratch) {
  if (scratch->size() != n) {
    scratch->resize(n);
    for (uint64_t i = 0; i < n; ++i) (*scratch)[i] = i;
  }
  for (uint64_t i = 0; i < count; ++i) std::swap((*scratch)[i], (*scratch)[i + rng->Below(n - i)]);
  return std::vector<uint64_t>(scratch->begin(), scratch->begin() + count);
}

}  // namespace ftsync::bench

#endif  // FTSYNC_BENCH_TIMING_H_

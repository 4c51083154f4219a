// Test pages for the diff tests: named (base, new) pairs, random and
// adversarial, and byte-by-byte reference answers to check the kernels by.
#ifndef FTSYNC_TEST_UNIT_DIFF_DIFF_TEST_PAGES_H_
#define FTSYNC_TEST_UNIT_DIFF_DIFF_TEST_PAGES_H_

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "diff/block_compare.h"

namespace ftsync::test {

using internal::BlockSize;
using internal::ByteRun;
using internal::kDiffPageSize;

using Page = std::vector<uint8_t>;

struct PagePair {
  std::string name;
  Page base;
  Page cur;
};

inline Page RandomPage(std::mt19937_64& rng) {
  Page p(kDiffPageSize);
  for (size_t i = 0; i < kDiffPageSize; i += 8) {
    uint64_t v = rng();
    std::memcpy(&p[i], &v, 8);
  }
  return p;
}

// Changes byte i of p to a different value (XOR with a non-zero `x`).
inline void Flip(Page& p, size_t i, uint8_t x = 0x5A) { p[i] ^= x; }

// The adversarial and random cases every diff test runs through.
inline std::vector<PagePair> TestPagePairs(uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::vector<PagePair> v;
  auto add = [&](std::string name, Page base, auto&& mutate) {
    Page cur = base;
    mutate(cur);
    v.push_back({std::move(name), std::move(base), std::move(cur)});
  };
  const Page zero(kDiffPageSize, 0);
  const Page rnd = RandomPage(rng);

  add("all zero, unchanged", zero, [](Page&) {});
  add("random, unchanged", rnd, [](Page&) {});
  add("zero to random (every byte changed)", zero, [&](Page& p) {
    p = RandomPage(rng);
    for (auto& b : p) b |= 1;
  });
  add("every byte changed (xor 0xff)", rnd, [](Page& p) {
    for (auto& b : p) b ^= 0xFF;
  });
  add("two unrelated random pages", rnd, [&](Page& p) { p = RandomPage(rng); });
  for (size_t phase = 0; phase < 2; ++phase)
    add("alternating bytes, phase " + std::to_string(phase), rnd, [&](Page& p) {
      for (size_t i = phase; i < kDiffPageSize; i += 2) Flip(p, i);
    });
  for (size_t stride : {3, 4, 5, 6, 7, 9, 63, 64, 65, 127, 129, 255, 257})
    add("every " + std::to_string(stride) + "th byte", rnd, [&](Page& p) {
      for (size_t i = 0; i < kDiffPageSize; i += stride) Flip(p, i);
    });
  // One byte at every block edge of every block size, and the page edges.
  for (size_t i : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{31}, size_t{32},
                   size_t{63}, size_t{64}, size_t{127}, size_t{128}, size_t{255},
                   size_t{256}, size_t{2047}, size_t{2048}, size_t{4031}, size_t{4032},
                   size_t{4087}, size_t{4088}, size_t{4094}, size_t{4095}})
    add("one byte at " + std::to_string(i), rnd, [&](Page& p) { Flip(p, i); });
  // First and last byte of every block, per block size.
  for (size_t bs : {64, 128, 256}) {
    add("first byte of every " + std::to_string(bs) + "-byte block", rnd, [&](Page& p) {
      for (size_t i = 0; i < kDiffPageSize; i += bs) Flip(p, i);
    });
    add("last byte of every " + std::to_string(bs) + "-byte block", rnd, [&](Page& p) {
      for (size_t i = bs - 1; i < kDiffPageSize; i += bs) Flip(p, i);
    });
    add("last and first bytes across " + std::to_string(bs) + "-byte edges", rnd, [&](Page& p) {
      for (size_t i = bs; i < kDiffPageSize; i += 2 * bs) {
        Flip(p, i - 1);
        Flip(p, i);
      }
    });
  }
  // Byte differences whose XOR is each awkward value for SWAR tricks.
  for (uint8_t x : {0x01, 0x7F, 0x80, 0xFF})
    add("xor " + std::to_string(x) + " at scattered bytes", rnd, [&](Page& p) {
      for (int k = 0; k < 200; ++k) Flip(p, rng() % kDiffPageSize, x);
    });
  add("first and last byte of the page", rnd, [](Page& p) {
    Flip(p, 0);
    Flip(p, kDiffPageSize - 1);
  });
  add("first half", rnd, [](Page& p) {
    for (size_t i = 0; i < kDiffPageSize / 2; ++i) Flip(p, i);
  });
  add("last 4032 bytes", rnd, [](Page& p) {
    for (size_t i = 64; i < kDiffPageSize; ++i) Flip(p, i);
  });
  // Gaps around the merge threshold: runs separated by 1..8 bytes.
  for (size_t gap = 1; gap <= 8; ++gap)
    add("runs of 3 with gaps of " + std::to_string(gap), rnd, [&](Page& p) {
      for (size_t i = 0; i + 3 <= kDiffPageSize; i += 3 + gap)
        for (size_t k = 0; k < 3; ++k) Flip(p, i + k);
    });
  // Random sparse and clustered changes.
  for (int n : {1, 2, 8, 64, 500, 2000})
    for (int rep = 0; rep < 3; ++rep)
      add(std::to_string(n) + " random bytes #" + std::to_string(rep), RandomPage(rng), [&](Page& p) {
        for (int k = 0; k < n; ++k) Flip(p, rng() % kDiffPageSize, static_cast<uint8_t>(rng() | 1));
      });
  for (int pct : {1, 10, 50, 90})
    for (int rep = 0; rep < 3; ++rep)
      add(std::to_string(pct) + "% in runs #" + std::to_string(rep), RandomPage(rng), [&](Page& p) {
        size_t target = kDiffPageSize * pct / 100, done = 0;
        while (done < target) {
          size_t len = 1 + rng() % 128, off = rng() % kDiffPageSize;
          for (size_t i = off; i < off + len && i < kDiffPageSize; ++i, ++done) Flip(p, i);
        }
      });
  return v;
}

// Byte-by-byte reference answers.
inline uint64_t RefBlocks(const uint8_t* a, const uint8_t* b, BlockSize bs) {
  const size_t n = internal::BlockBytes(bs);
  uint64_t m = 0;
  for (size_t i = 0; i < kDiffPageSize; ++i)
    if (a[i] != b[i]) m |= uint64_t{1} << (i / n);
  return m;
}

inline std::vector<ByteRun> RefRuns(const uint8_t* a, const uint8_t* b, size_t gap) {
  std::vector<ByteRun> runs;
  size_t i = 0;
  while (i < kDiffPageSize) {
    if (a[i] == b[i]) {
      ++i;
      continue;
    }
    size_t s = i;
    while (i < kDiffPageSize && a[i] != b[i]) ++i;
    if (!runs.empty() && s - (runs.back().offset + runs.back().length) <= gap)
      runs.back().length = static_cast<uint16_t>(i - runs.back().offset);
    else
      runs.push_back({static_cast<uint16_t>(s), static_cast<uint16_t>(i - s)});
  }
  return runs;
}

// Restores the active kernel variant when it goes out of scope.
class IsaGuard {
 public:
  IsaGuard() : saved_(internal::ActiveDiffIsa()) {}
  ~IsaGuard() { (void)internal::SetDiffIsaForTesting(saved_); }

 private:
  internal::DiffIsa saved_;
};

inline std::vector<internal::DiffIsa> SupportedIsas() {
  std::vector<internal::DiffIsa> v;
  for (auto isa : {internal::DiffIsa::kScalar, internal::DiffIsa::kAvx2, internal::DiffIsa::kAvx512})
    if (internal::DiffIsaSupported(isa)) v.push_back(isa);
  return v;
}

}  // namespace ftsync::test

#endif  // FTSYNC_TEST_UNIT_DIFF_DIFF_TEST_PAGES_H_

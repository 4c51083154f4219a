// The run extraction behind ExtractRuns, as an always-inlined template so
// each kernel variant compiles the same code for its own ISA (with POPCNT and
// BMI in the x86 variants; a portable popcount in the scalar one). Private to
// libftsync/src/diff; include only from the kernel files.
#ifndef FTSYNC_SRC_DIFF_RUN_EXTRACT_IMPL_H_
#define FTSYNC_SRC_DIFF_RUN_EXTRACT_IMPL_H_

#include <cstddef>
#include <cstdint>

#include "diff/block_compare.h"

#define FTSYNC_DIFF_INLINE inline __attribute__((always_inline))

namespace ftsync::internal {

inline ByteRun MakeRun(size_t start, size_t end) {
  return ByteRun{static_cast<uint16_t>(start), static_cast<uint16_t>(end - start)};
}

// For merge gaps of 64 and more: scans for each run edge (block_compare.cc).
size_t ExtractRunsScan(const uint64_t* m, uint64_t block_mask, size_t merge_gap, ByteRun* out);

using U128 = unsigned __int128;

// x | x >> 1 | ... | x >> (kWindow - 1), by doubling the covered window
// (compile-time shifts: 3 steps for a window of 5).
template <unsigned kCovered, unsigned kWindow>
FTSYNC_DIFF_INLINE U128 SpreadDown(U128 x) {
  if constexpr (kCovered >= kWindow) {
    return x;
  } else {
    constexpr unsigned kStep = kCovered < kWindow - kCovered ? kCovered : kWindow - kCovered;
    return SpreadDown<kCovered + kStep, kWindow>(x | (x >> kStep));
  }
}

// Bit p of the result: OR of bits p+1 .. p+kWindow of (hi:lo), for p in
// 0..63 (kWindow <= 64).
template <unsigned kWindow>
FTSYNC_DIFF_INLINE uint64_t AnyAhead(uint64_t lo, uint64_t hi) {
  return static_cast<uint64_t>(SpreadDown<1, kWindow>(((static_cast<U128>(hi) << 64) | lo) >> 1));
}

// The same for a window known only at run time.
FTSYNC_DIFF_INLINE uint64_t AnyAheadRuntime(uint64_t lo, uint64_t hi, unsigned window) {
  U128 x = ((static_cast<U128>(hi) << 64) | lo) >> 1;
  for (unsigned covered = 1; covered < window;) {
    unsigned step = covered < window - covered ? covered : window - covered;
    x |= x >> step;
    covered += step;
  }
  return static_cast<uint64_t>(x);
}

// Appends base + the index of every set bit of `bits` to dst, ascending, and
// returns how many. Writes up to 3 entries past them (callers leave room):
// four per round without a data-dependent branch per bit.
template <class BitOps>
FTSYNC_DIFF_INLINE size_t Flatten(uint64_t bits, uint16_t base, uint16_t* dst) {
  const size_t count = static_cast<size_t>(BitOps::Popcount(bits));
  size_t i = 0;
  do {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // `| 1 << 63` keeps ctz defined once bits is exhausted (the entry is
      // then past `count` and ignored).
      dst[i + k] = static_cast<uint16_t>(base + __builtin_ctzll(bits | (uint64_t{1} << 63)));
      bits &= bits - 1;
    }
    i += 4;
  } while (i < count);
  return count;
}

// Run extraction for merge gaps below 64, one pass over the words holding
// changes. Per word: the changed bytes with another changed byte at most
// gap+1 bytes ahead (`near`) open a gap to fill; adding 1 just after each of
// them to the unchanged mask carries through that gap's unchanged bytes and
// stops at the next changed byte, so (sum ^ unchanged) & unchanged is the gap.
// A gap crosses at most one word boundary (it is shorter than a word); the
// add's carry and `near`'s top bit carry into the next word. The filled mask
// is zero wherever the byte mask is (a word of unchanged bytes is a gap
// longer than the merge gap), so only words with changes are visited. Run
// starts and ends are collected in two ascending lists and paired at the end.
// `window` is gap + 1; kWindow, if not 0, is the same as a constant.
template <class BitOps, unsigned kWindow>
FTSYNC_DIFF_INLINE size_t ExtractRunsFill(const uint64_t* m, uint64_t block_mask, unsigned window,
                                          ByteRun* out) {
  uint16_t starts[kMaxRuns + 4], ends[kMaxRuns + 4];
  size_t ns = 0, ne = 0;
  // State carried from the previous visited word; it applies only if that
  // word is adjacent (`link` all ones), which is data-dependent, so it is
  // masked rather than branched on.
  size_t prev_w = ~size_t{0} - 1;  // not adjacent to word 0
  uint64_t prev_c = 0;     // filled mask of word prev_w
  uint64_t near_top = 0;   // bit 63 of prev_w's `near`
  uint64_t add_carry = 0;  // carry out of prev_w's add
  const uint64_t window_mask = window >= 64 ? ~uint64_t{0} : (uint64_t{1} << window) - 1;
  for (uint64_t todo = block_mask; todo; todo &= todo - 1) {
    const size_t w = static_cast<size_t>(__builtin_ctzll(todo));
    const uint64_t mw = m[w];
    if (mw == 0) continue;  // tolerate a loose block_mask
    const uint64_t link = uint64_t{0} - static_cast<uint64_t>(prev_w + 1 == w);
    // A run that reached the top of a non-adjacent previous word ended there.
    ends[ne] = static_cast<uint16_t>((prev_w + 1) * 64);
    ne += (prev_c >> 63) & ~link;
    prev_c &= link;
    near_top &= link;
    add_carry &= link;
    uint64_t c = mw;
    if (window > 1) {
      const uint64_t next = w + 1 < kMaskWords ? m[w + 1] : 0;
      if (mw == ~uint64_t{0}) {  // every byte changed: nothing to fill
        near_top = (next & window_mask) != 0;
        add_carry = 0;
      } else {
        const uint64_t ahead =
            kWindow ? AnyAhead<kWindow>(mw, next) : AnyAheadRuntime(mw, next, window);
        const uint64_t near = mw & ahead;
        const uint64_t unchanged = ~mw;
        const U128 sum = static_cast<U128>(unchanged) + ((near << 1) | near_top) + add_carry;
        const uint64_t low = static_cast<uint64_t>(sum);
        c = mw | ((low ^ unchanged) & unchanged);
        near_top = near >> 63;
        add_carry = static_cast<uint64_t>(sum >> 64);
      }
    }
    const uint64_t before = (c << 1) | (prev_c >> 63);  // bit p: byte p-1 in a run
    const uint64_t word_starts = c & ~before, word_ends = ~c & before;
    // Words inside a run have no edges: skip them (well predicted on runs).
    if (word_starts | word_ends) {
      const uint16_t base = static_cast<uint16_t>(w * 64);
      ns += Flatten<BitOps>(word_starts, base, starts + ns);
      ne += Flatten<BitOps>(word_ends, base, ends + ne);
    }
    prev_w = w;
    prev_c = c;
  }
  if (prev_c >> 63) ends[ne++] = static_cast<uint16_t>((prev_w + 1) * 64);
  // Runs are separated by at least one unchanged byte: ns <= kMaxRuns.
  for (size_t i = 0; i < ns; ++i)
    out[i] = ByteRun{starts[i], static_cast<uint16_t>(ends[i] - starts[i])};
  return ns;
}

// ExtractRuns (block_compare.h) for masks[kMaskWords]; BitOps::Popcount
// counts the set bits of a word.
template <class BitOps>
FTSYNC_DIFF_INLINE size_t ExtractRunsImpl(const uint64_t* m, uint64_t block_mask, size_t merge_gap,
                                          ByteRun* o) {
  switch (merge_gap) {  // constant windows for the common gaps
    case 0:
      return ExtractRunsFill<BitOps, 1>(m, block_mask, 1, o);
    case 1:
      return ExtractRunsFill<BitOps, 2>(m, block_mask, 2, o);
    case 2:
      return ExtractRunsFill<BitOps, 3>(m, block_mask, 3, o);
    case 3:
      return ExtractRunsFill<BitOps, 4>(m, block_mask, 4, o);
    case 4:
      return ExtractRunsFill<BitOps, 5>(m, block_mask, 5, o);
    default:
      if (merge_gap < 64)
        return ExtractRunsFill<BitOps, 0>(m, block_mask, static_cast<unsigned>(merge_gap) + 1, o);
      return ExtractRunsScan(m, block_mask, merge_gap, o);
  }
}

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_RUN_EXTRACT_IMPL_H_

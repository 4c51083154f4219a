// Finding what changed between two versions of a 4 KiB page: which fixed
// blocks differ (a bitmask), and the exact changed byte runs.
//
// Two kernels do the memory work and a third turns byte masks into runs:
//   - the block kernel: bit i set iff bytes [64i, 64i+64) differ;
//   - the byte kernel: for each 64-byte block i a 64-bit mask whose bit j is
//     set iff byte 64i+j differs;
//   - the run extraction: one template (run_extract_impl.h) compiled for
//     each variant, bit-parallel (no per-byte loop).
// Masks for 128- and 256-byte blocks are folded from the 64-byte mask. Every
// variant gives bit-identical results.
//
// Implementations: portable scalar C++, AVX2 and AVX-512 (BW). The vector
// ones are compiled with per-function target attributes (the library is not
// built with -mavx2) and chosen at first use with __builtin_cpu_supports;
// SetDiffIsaForTesting forces one, so tests can compare all of them.
//
// The page size is fixed at kDiffPageSize (4096, x86 guest pages): offsets
// and lengths of runs fit in 16 bits and a block bitmask in 64.
#ifndef FTSYNC_SRC_DIFF_BLOCK_COMPARE_H_
#define FTSYNC_SRC_DIFF_BLOCK_COMPARE_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "ftsync/status.h"

namespace ftsync::internal {

inline constexpr size_t kDiffPageSize = 4096;
inline constexpr size_t kMaskWords = kDiffPageSize / 64;  // byte-mask words per page

// The fixed block sizes of the block compare and of the `blocks` delta
// format. The value is the size in bytes.
enum class BlockSize : uint16_t { k64 = 64, k128 = 128, k256 = 256 };

inline constexpr size_t BlockBytes(BlockSize b) { return static_cast<size_t>(b); }
inline constexpr size_t BlocksPerPage(BlockSize b) { return kDiffPageSize / BlockBytes(b); }
// log2 of the block size (6, 7 or 8).
inline constexpr unsigned BlockShift(BlockSize b) {
  return b == BlockSize::k64 ? 6 : b == BlockSize::k128 ? 7 : 8;
}

// Instruction-set variants of the kernels.
enum class DiffIsa { kScalar, kAvx2, kAvx512 };

const char* DiffIsaName(DiffIsa isa);
// True if this CPU (and this build) can run `isa`. kScalar always can.
bool DiffIsaSupported(DiffIsa isa);
// The fastest supported variant: what the library uses unless a test forced
// another.
DiffIsa BestDiffIsa();
// The variant in use now.
DiffIsa ActiveDiffIsa();
// Makes every later call use `isa`. kNotSupported if the CPU lacks it (the
// active variant is then unchanged). For tests and benchmarks; not
// thread-safe against concurrent compares.
Status SetDiffIsaForTesting(DiffIsa isa);

// Bit i of the result is set iff block i (bytes [i*B, (i+1)*B), B the block
// size) differs between `a` and `b`. Both point to kDiffPageSize bytes; no
// alignment required. Bits at and above BlocksPerPage(bs) are zero.
uint64_t ChangedBlocks(const uint8_t* a, const uint8_t* b, BlockSize bs);

// Fills masks[i] with the byte-difference mask of 64-byte block i (bit j set
// iff a[64i+j] != b[64i+j]) and returns the 64-byte block mask (bit i set iff
// masks[i] != 0).
uint64_t ByteDiffMasks(const uint8_t* a, const uint8_t* b, std::span<uint64_t, kMaskWords> masks);

// Folds a 64-byte block mask to the mask of block size `bs` (bit i of the
// result is the OR of the 64-byte bits covering block i).
uint64_t FoldBlockMask(uint64_t mask64, BlockSize bs);

// A changed byte range [offset, offset + length) of a page; length >= 1.
struct ByteRun {
  uint16_t offset;
  uint16_t length;
  bool operator==(const ByteRun&) const = default;
};

// The most runs a page can have: every other byte changed, no merging.
inline constexpr size_t kMaxRuns = kDiffPageSize / 2;

// Extracts the runs of set bits from byte masks (as ByteDiffMasks fills them;
// `block_mask` is its return value), in ascending order. Two runs separated
// by at most `merge_gap` unchanged bytes become one run covering the gap.
// Returns the number of runs written to `out`.
size_t ExtractRuns(std::span<const uint64_t, kMaskWords> masks, uint64_t block_mask,
                   size_t merge_gap, std::span<ByteRun, kMaxRuns> out);

// ByteDiffMasks + ExtractRuns: the changed runs between pages `a` and `b`.
size_t ChangedRuns(const uint8_t* a, const uint8_t* b, size_t merge_gap,
                   std::span<ByteRun, kMaxRuns> out);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_BLOCK_COMPARE_H_

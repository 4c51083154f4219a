// The per-ISA kernels behind block_compare.h; private to libftsync/src/diff.
#ifndef FTSYNC_SRC_DIFF_DIFF_KERNELS_H_
#define FTSYNC_SRC_DIFF_DIFF_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "diff/block_compare.h"

namespace ftsync::internal {

// Both kernels read kDiffPageSize bytes from each of `a` and `b`.
struct DiffKernels {
  // Bit i set iff 64-byte block i differs.
  uint64_t (*block_mask)(const uint8_t* a, const uint8_t* b);
  // masks[i] bit j set iff byte 64i+j differs (64 words written); returns
  // the 64-byte block mask.
  uint64_t (*byte_masks)(const uint8_t* a, const uint8_t* b, uint64_t* masks);
  // ExtractRuns (block_compare.h) on masks[kMaskWords]; `out` has room for
  // kMaxRuns runs.
  size_t (*extract_runs)(const uint64_t* masks, uint64_t block_mask, size_t merge_gap, ByteRun* out);
};

extern const DiffKernels kScalarDiffKernels;
// Defined only when the compiler can target the ISA (x86-64 with GCC or
// Clang); FTSYNC_DIFF_HAVE_X86 says so.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FTSYNC_DIFF_HAVE_X86 1
extern const DiffKernels kAvx2DiffKernels;
extern const DiffKernels kAvx512DiffKernels;
#endif

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_DIFF_KERNELS_H_

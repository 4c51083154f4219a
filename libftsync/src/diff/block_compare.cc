// Dispatch, the scalar kernels, the run extraction by scanning (large merge
// gaps) and the mask folding shared by every variant.
#include "diff/block_compare.h"

#include <atomic>
#include <bit>
#include <cstring>

#include "diff/diff_kernels.h"
#include "diff/run_extract_impl.h"

namespace ftsync::internal {
namespace {

// The masks map byte k of a loaded word to bit k.
static_assert(std::endian::native == std::endian::little, "diff kernels assume little-endian");

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t ScalarBlockMask(const uint8_t* a, const uint8_t* b) {
  uint64_t mask = 0;
  for (int i = 0; i < 64; ++i) {
    uint64_t x = 0;
    for (int k = 0; k < 64; k += 8) x |= Load64(a + 64 * i + k) ^ Load64(b + 64 * i + k);
    mask |= static_cast<uint64_t>(x != 0) << i;
  }
  return mask;
}

// One bit per byte of x: bit k set iff byte k of x is non-zero.
inline uint64_t NonZeroBytes(uint64_t x) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;
  uint64_t t = (((x & kLow7) + kLow7) | x) & ~kLow7;  // high bit of each non-zero byte
  return ((t >> 7) * 0x0102040810204080ull) >> 56;   // gather the 8 high bits
}

uint64_t ScalarByteMasks(const uint8_t* a, const uint8_t* b, uint64_t* masks) {
  uint64_t block_mask = 0;
  for (int i = 0; i < 64; ++i) {
    uint64_t m = 0;
    for (int k = 0; k < 8; ++k) {
      uint64_t x = Load64(a + 64 * i + 8 * k) ^ Load64(b + 64 * i + 8 * k);
      if (x) m |= NonZeroBytes(x) << (8 * k);
    }
    masks[i] = m;
    block_mask |= static_cast<uint64_t>(m != 0) << i;
  }
  return block_mask;
}

// Bit i of the result = bit 2i | bit 2i+1 of m.
inline uint64_t FoldPairs(uint64_t m) {
  m = (m | (m >> 1)) & 0x5555555555555555ull;
  m = (m | (m >> 1)) & 0x3333333333333333ull;
  m = (m | (m >> 2)) & 0x0F0F0F0F0F0F0F0Full;
  m = (m | (m >> 4)) & 0x00FF00FF00FF00FFull;
  m = (m | (m >> 8)) & 0x0000FFFF0000FFFFull;
  m = (m | (m >> 16)) & 0x00000000FFFFFFFFull;
  return m;
}

const DiffKernels* KernelsFor(DiffIsa isa) {
  switch (isa) {
#ifdef FTSYNC_DIFF_HAVE_X86
    case DiffIsa::kAvx2:
      return &kAvx2DiffKernels;
    case DiffIsa::kAvx512:
      return &kAvx512DiffKernels;
#endif
    default:
      return &kScalarDiffKernels;
  }
}

std::atomic<const DiffKernels*> g_kernels{nullptr};
std::atomic<DiffIsa> g_isa{DiffIsa::kScalar};

const DiffKernels& Kernels() {
  const DiffKernels* k = g_kernels.load(std::memory_order_acquire);
  if (k) return *k;
  // First use (possibly racing with another thread: both store the same).
  DiffIsa isa = BestDiffIsa();
  k = KernelsFor(isa);
  g_isa.store(isa, std::memory_order_relaxed);
  g_kernels.store(k, std::memory_order_release);
  return *k;
}

// Next set bit at or after `pos`, kDiffPageSize if none. `block_mask` has a
// bit for (at least) every non-zero word, so empty words are skipped.
inline size_t NextSet(const uint64_t* m, uint64_t block_mask, size_t pos) {
  if (pos >= kDiffPageSize) return kDiffPageSize;
  size_t w = pos >> 6;
  uint64_t bits = m[w] & (~uint64_t{0} << (pos & 63));
  if (bits) return (w << 6) + static_cast<size_t>(__builtin_ctzll(bits));
  uint64_t rest = w == 63 ? 0 : block_mask & (~uint64_t{0} << (w + 1));
  while (rest) {
    w = static_cast<size_t>(__builtin_ctzll(rest));
    if (m[w]) return (w << 6) + static_cast<size_t>(__builtin_ctzll(m[w]));
    rest &= rest - 1;
  }
  return kDiffPageSize;
}

// Next clear bit at or after `pos`, kDiffPageSize if none.
inline size_t NextClear(const uint64_t* m, size_t pos) {
  if (pos >= kDiffPageSize) return kDiffPageSize;
  size_t w = pos >> 6;
  uint64_t bits = ~m[w] & (~uint64_t{0} << (pos & 63));
  while (!bits) {
    if (++w == kMaskWords) return kDiffPageSize;
    bits = ~m[w];
  }
  return (w << 6) + static_cast<size_t>(__builtin_ctzll(bits));
}

// Without POPCNT in the baseline ISA, __builtin_popcountll is a libgcc call.
struct PortableBitOps {
  static uint64_t Popcount(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (x * 0x0101010101010101ull) >> 56;
  }
};

size_t ScalarExtractRuns(const uint64_t* masks, uint64_t block_mask, size_t merge_gap, ByteRun* out) {
  return ExtractRunsImpl<PortableBitOps>(masks, block_mask, merge_gap, out);
}

}  // namespace

// The run extraction by scanning, for any merge gap: one NextSet/NextClear
// per run edge.
size_t ExtractRunsScan(const uint64_t* m, uint64_t block_mask, size_t merge_gap, ByteRun* out) {
  size_t n = 0;
  size_t pos = 0;
  for (;;) {
    size_t start = NextSet(m, block_mask, pos);
    if (start >= kDiffPageSize) break;
    size_t end = NextClear(m, start + 1);
    while (end < kDiffPageSize) {
      size_t next = NextSet(m, block_mask, end);
      if (next >= kDiffPageSize || next - end > merge_gap) break;
      end = NextClear(m, next + 1);
    }
    // Runs are separated by at least one unchanged byte: at most kMaxRuns.
    out[n++] = MakeRun(start, end);
    pos = end;
  }
  return n;
}

const DiffKernels kScalarDiffKernels = {ScalarBlockMask, ScalarByteMasks, ScalarExtractRuns};

const char* DiffIsaName(DiffIsa isa) {
  switch (isa) {
    case DiffIsa::kScalar:
      return "scalar";
    case DiffIsa::kAvx2:
      return "avx2";
    case DiffIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool DiffIsaSupported(DiffIsa isa) {
  switch (isa) {
    case DiffIsa::kScalar:
      return true;
#ifdef FTSYNC_DIFF_HAVE_X86
    // libgcc's checks include the OS's XSAVE support of the registers.
    case DiffIsa::kAvx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
             __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    case DiffIsa::kAvx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi") &&
             __builtin_cpu_supports("bmi2");
#endif
    default:
      return false;
  }
}

DiffIsa BestDiffIsa() {
  if (DiffIsaSupported(DiffIsa::kAvx512)) return DiffIsa::kAvx512;
  if (DiffIsaSupported(DiffIsa::kAvx2)) return DiffIsa::kAvx2;
  return DiffIsa::kScalar;
}

DiffIsa ActiveDiffIsa() {
  Kernels();
  return g_isa.load(std::memory_order_relaxed);
}

Status SetDiffIsaForTesting(DiffIsa isa) {
  if (!DiffIsaSupported(isa))
    return Status(Errc::kNotSupported, std::string("diff: this CPU cannot run the ") +
                                           DiffIsaName(isa) + " kernels");
  g_isa.store(isa, std::memory_order_relaxed);
  g_kernels.store(KernelsFor(isa), std::memory_order_release);
  return Status::OK();
}

uint64_t FoldBlockMask(uint64_t mask64, BlockSize bs) {
  switch (bs) {
    case BlockSize::k64:
      return mask64;
    case BlockSize::k128:
      return FoldPairs(mask64);
    case BlockSize::k256:
      return FoldPairs(FoldPairs(mask64));
  }
  return mask64;
}

uint64_t ChangedBlocks(const uint8_t* a, const uint8_t* b, BlockSize bs) {
  return FoldBlockMask(Kernels().block_mask(a, b), bs);
}

uint64_t ByteDiffMasks(const uint8_t* a, const uint8_t* b, std::span<uint64_t, kMaskWords> masks) {
  return Kernels().byte_masks(a, b, masks.data());
}

size_t ExtractRuns(std::span<const uint64_t, kMaskWords> masks, uint64_t block_mask,
                   size_t merge_gap, std::span<ByteRun, kMaxRuns> out) {
  return Kernels().extract_runs(masks.data(), block_mask, merge_gap, out.data());
}

size_t ChangedRuns(const uint8_t* a, const uint8_t* b, size_t merge_gap,
                   std::span<ByteRun, kMaxRuns> out) {
  uint64_t masks[kMaskWords];
  const DiffKernels& k = Kernels();
  uint64_t block_mask = k.byte_masks(a, b, masks);
  return k.extract_runs(masks, block_mask, merge_gap, out.data());
}

}  // namespace ftsync::internal

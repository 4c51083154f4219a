// The AVX2 and AVX-512 kernels. Each function carries its own target
// attribute, so this file builds with the library's generic flags and the
// code runs only after the dispatcher (block_compare.cc) has checked the CPU.
#include "diff/diff_kernels.h"

#ifdef FTSYNC_DIFF_HAVE_X86

#include <immintrin.h>

#include "diff/run_extract_impl.h"

namespace ftsync::internal {
namespace {

constexpr int kBlocks = 64;  // 64-byte blocks per page

__attribute__((target("avx2"))) uint64_t Avx2BlockMask(const uint8_t* a, const uint8_t* b) {
  uint64_t mask = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const auto* pa = reinterpret_cast<const __m256i*>(a + 64 * i);
    const auto* pb = reinterpret_cast<const __m256i*>(b + 64 * i);
    __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256(pa), _mm256_loadu_si256(pb));
    __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256(pa + 1), _mm256_loadu_si256(pb + 1));
    __m256i x = _mm256_or_si256(x0, x1);
    mask |= static_cast<uint64_t>(!_mm256_testz_si256(x, x)) << i;
  }
  return mask;
}

__attribute__((target("avx2"))) uint64_t Avx2ByteMasks(const uint8_t* a, const uint8_t* b,
                                                       uint64_t* masks) {
  uint64_t block_mask = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const auto* pa = reinterpret_cast<const __m256i*>(a + 64 * i);
    const auto* pb = reinterpret_cast<const __m256i*>(b + 64 * i);
    __m256i e0 = _mm256_cmpeq_epi8(_mm256_loadu_si256(pa), _mm256_loadu_si256(pb));
    __m256i e1 = _mm256_cmpeq_epi8(_mm256_loadu_si256(pa + 1), _mm256_loadu_si256(pb + 1));
    uint64_t eq = static_cast<uint32_t>(_mm256_movemask_epi8(e0)) |
                  static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(e1))) << 32;
    uint64_t m = ~eq;
    masks[i] = m;
    block_mask |= static_cast<uint64_t>(m != 0) << i;
  }
  return block_mask;
}

__attribute__((target("avx512f,avx512bw"))) uint64_t Avx512BlockMask(const uint8_t* a,
                                                                     const uint8_t* b) {
  uint64_t mask = 0;
  for (int i = 0; i < kBlocks; ++i) {
    __m512i va = _mm512_loadu_si512(a + 64 * i);
    __m512i vb = _mm512_loadu_si512(b + 64 * i);
    mask |= static_cast<uint64_t>(_mm512_cmpneq_epi64_mask(va, vb) != 0) << i;
  }
  return mask;
}

__attribute__((target("avx512f,avx512bw"))) uint64_t Avx512ByteMasks(const uint8_t* a,
                                                                     const uint8_t* b,
                                                                     uint64_t* masks) {
  uint64_t block_mask = 0;
  for (int i = 0; i < kBlocks; ++i) {
    __m512i va = _mm512_loadu_si512(a + 64 * i);
    __m512i vb = _mm512_loadu_si512(b + 64 * i);
    uint64_t m = _mm512_cmpneq_epi8_mask(va, vb);
    masks[i] = m;
    block_mask |= static_cast<uint64_t>(m != 0) << i;
  }
  return block_mask;
}

// The run extraction is scalar bit manipulation: the same template as the
// scalar variant, compiled with POPCNT, BMI1 (tzcnt, blsr) and BMI2.
struct HardwareBitOps {
  static FTSYNC_DIFF_INLINE uint64_t Popcount(uint64_t x) { return static_cast<uint64_t>(__builtin_popcountll(x)); }
};

__attribute__((target("avx2,popcnt,bmi,bmi2"))) size_t Avx2ExtractRuns(const uint64_t* masks,
                                                                         uint64_t block_mask,
                                                                         size_t merge_gap,
                                                                         ByteRun* out) {
  return ExtractRunsImpl<HardwareBitOps>(masks, block_mask, merge_gap, out);
}

__attribute__((target("avx512f,avx512bw,popcnt,bmi,bmi2"))) size_t Avx512ExtractRuns(
    const uint64_t* masks, uint64_t block_mask, size_t merge_gap, ByteRun* out) {
  return ExtractRunsImpl<HardwareBitOps>(masks, block_mask, merge_gap, out);
}

}  // namespace

const DiffKernels kAvx2DiffKernels = {Avx2BlockMask, Avx2ByteMasks, Avx2ExtractRuns};
const DiffKernels kAvx512DiffKernels = {Avx512BlockMask, Avx512ByteMasks, Avx512ExtractRuns};

}  // namespace ftsync::internal

#endif  // FTSYNC_DIFF_HAVE_X86

// Block compare and run extraction: every kernel variant against a
// byte-by-byte reference, and the variants against each other.
#include <catch2/catch.hpp>

#include <array>
#include <random>
#include <vector>

#include "diff/block_compare.h"
#include "diff/diff_test_pages.h"

namespace ftsync {
namespace {
using namespace internal;
using test::IsaGuard;
using test::Page;

constexpr BlockSize kSizes[] = {BlockSize::k64, BlockSize::k128, BlockSize::k256};
constexpr size_t kGaps[] = {0, 1, 2, 3, 4, 5, 16, 63, 64, 100, 4096};

std::vector<ByteRun> Runs(const uint8_t* a, const uint8_t* b, size_t gap) {
  std::array<ByteRun, kMaxRuns> out;
  size_t n = ChangedRuns(a, b, gap, out);
  return {out.begin(), out.begin() + static_cast<long>(n)};
}

TEST_CASE("diff: the best ISA is supported and can be forced", "[diff]") {
  IsaGuard guard;
  CHECK(DiffIsaSupported(DiffIsa::kScalar));
  CHECK(DiffIsaSupported(BestDiffIsa()));
  for (DiffIsa isa : test::SupportedIsas()) {
    REQUIRE(SetDiffIsaForTesting(isa).ok());
    CHECK(ActiveDiffIsa() == isa);
  }
  for (DiffIsa isa : {DiffIsa::kAvx2, DiffIsa::kAvx512}) {
    if (DiffIsaSupported(isa)) continue;
    DiffIsa before = ActiveDiffIsa();
    Status s = SetDiffIsaForTesting(isa);
    CHECK(s.code() == Errc::kNotSupported);
    CHECK(ActiveDiffIsa() == before);
  }
  if (!DiffIsaSupported(DiffIsa::kAvx512)) WARN("AVX-512 kernels not exercised: CPU lacks them");
  if (!DiffIsaSupported(DiffIsa::kAvx2)) WARN("AVX2 kernels not exercised: CPU lacks them");
}

TEST_CASE("diff: every ISA matches the byte-by-byte reference on test pages", "[diff]") {
  IsaGuard guard;
  const auto pairs = test::TestPagePairs();
  for (DiffIsa isa : test::SupportedIsas()) {
    REQUIRE(SetDiffIsaForTesting(isa).ok());
    for (const auto& pp : pairs) {
      INFO(DiffIsaName(isa) << ": " << pp.name);
      const uint8_t* a = pp.base.data();
      const uint8_t* b = pp.cur.data();
      for (BlockSize bs : kSizes) {
        INFO("block size " << BlockBytes(bs));
        CHECK(ChangedBlocks(a, b, bs) == test::RefBlocks(a, b, bs));
      }
      for (size_t gap : kGaps) {
        INFO("merge gap " << gap);
        CHECK(Runs(a, b, gap) == test::RefRuns(a, b, gap));
      }
    }
  }
}

TEST_CASE("diff: kernels need no alignment", "[diff]") {
  IsaGuard guard;
  std::mt19937_64 rng(7);
  for (DiffIsa isa : test::SupportedIsas()) {
    REQUIRE(SetDiffIsaForTesting(isa).ok());
    for (size_t shift : {1, 3, 17, 33, 63}) {
      INFO(DiffIsaName(isa) << " shift " << shift);
      std::vector<uint8_t> a(kDiffPageSize + 64), b(kDiffPageSize + 64);
      Page base = test::RandomPage(rng), cur = base;
      for (int k = 0; k < 40; ++k) test::Flip(cur, rng() % kDiffPageSize);
      std::memcpy(a.data() + shift, base.data(), kDiffPageSize);
      std::memcpy(b.data() + 64 - shift, cur.data(), kDiffPageSize);
      for (BlockSize bs : kSizes)
        CHECK(ChangedBlocks(a.data() + shift, b.data() + 64 - shift, bs) ==
              test::RefBlocks(base.data(), cur.data(), bs));
      CHECK(Runs(a.data() + shift, b.data() + 64 - shift, 4) ==
            test::RefRuns(base.data(), cur.data(), 4));
    }
  }
}

TEST_CASE("diff: scalar and vector byte masks are identical on random pages", "[diff]") {
  IsaGuard guard;
  std::mt19937_64 rng(1234);
  const auto isas = test::SupportedIsas();
  for (int iter = 0; iter < 2000; ++iter) {
    Page base = test::RandomPage(rng), cur = base;
    // From one byte to every byte, biased to sparse changes.
    size_t changes = size_t{1} << (rng() % 13);
    for (size_t k = 0; k < changes; ++k) test::Flip(cur, rng() % kDiffPageSize, uint8_t(rng() | 1));
    uint64_t ref_masks[kMaskWords];
    REQUIRE(SetDiffIsaForTesting(DiffIsa::kScalar).ok());
    uint64_t ref_block = ByteDiffMasks(base.data(), cur.data(), ref_masks);
    uint64_t ref_blocks = ChangedBlocks(base.data(), cur.data(), BlockSize::k64);
    CHECK(ref_block == ref_blocks);
    for (DiffIsa isa : isas) {
      REQUIRE(SetDiffIsaForTesting(isa).ok());
      uint64_t masks[kMaskWords];
      CHECK(ByteDiffMasks(base.data(), cur.data(), masks) == ref_block);
      CHECK(std::equal(masks, masks + kMaskWords, ref_masks));
      CHECK(ChangedBlocks(base.data(), cur.data(), BlockSize::k64) == ref_blocks);
    }
  }
}

TEST_CASE("diff: run extraction matches the reference for every merge gap 0..70", "[diff]") {
  // Gaps below 64 take the bit-parallel path, larger ones the scan.
  std::mt19937_64 rng(99);
  for (int iter = 0; iter < 300; ++iter) {
    Page base = test::RandomPage(rng), cur = base;
    size_t n = 1 + rng() % 200;
    for (size_t k = 0; k < n; ++k) {
      size_t off = rng() % kDiffPageSize, len = 1 + rng() % (rng() % 2 ? 3 : 80);
      for (size_t i = off; i < off + len && i < kDiffPageSize; ++i) test::Flip(cur, i);
    }
    uint64_t masks[kMaskWords];
    uint64_t block = ByteDiffMasks(base.data(), cur.data(), masks);
    for (size_t gap = 0; gap <= 70; ++gap) {
      INFO("iteration " << iter << " gap " << gap);
      std::array<ByteRun, kMaxRuns> out;
      size_t got = ExtractRuns(masks, block, gap, out);
      REQUIRE(std::vector<ByteRun>(out.begin(), out.begin() + static_cast<long>(got)) ==
              test::RefRuns(base.data(), cur.data(), gap));
    }
  }
}

TEST_CASE("diff: FoldBlockMask ORs adjacent blocks", "[diff]") {
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 1000; ++iter) {
    uint64_t m = rng() & rng();  // sparser
    uint64_t want128 = 0, want256 = 0;
    for (int i = 0; i < 64; ++i)
      if (m >> i & 1) {
        want128 |= uint64_t{1} << (i / 2);
        want256 |= uint64_t{1} << (i / 4);
      }
    CHECK(FoldBlockMask(m, BlockSize::k64) == m);
    CHECK(FoldBlockMask(m, BlockSize::k128) == want128);
    CHECK(FoldBlockMask(m, BlockSize::k256) == want256);
  }
  CHECK(FoldBlockMask(~uint64_t{0}, BlockSize::k128) == 0xFFFFFFFFull);
  CHECK(FoldBlockMask(~uint64_t{0}, BlockSize::k256) == 0xFFFFull);
}

TEST_CASE("diff: merge gap joins runs separated by at most the gap", "[diff]") {
  Page a(kDiffPageSize, 0), b = a;
  b[10] = 1;
  b[15] = 1;  // 4 unchanged bytes between (11..14)
  CHECK(Runs(a.data(), b.data(), 3) == std::vector<ByteRun>{{10, 1}, {15, 1}});
  CHECK(Runs(a.data(), b.data(), 4) == std::vector<ByteRun>{{10, 6}});
  CHECK(Runs(a.data(), b.data(), 0) == std::vector<ByteRun>{{10, 1}, {15, 1}});
}

TEST_CASE("diff: runs reach the page edges and the maximum count", "[diff]") {
  Page a(kDiffPageSize, 0), b(kDiffPageSize, 0xEE);
  CHECK(Runs(a.data(), b.data(), 0) == std::vector<ByteRun>{{0, 4096}});
  Page c = a;
  for (size_t i = 0; i < kDiffPageSize; i += 2) c[i] = 1;
  auto runs = Runs(a.data(), c.data(), 0);
  REQUIRE(runs.size() == kMaxRuns);
  CHECK(runs.front() == ByteRun{0, 1});
  CHECK(runs.back() == ByteRun{4094, 1});
  CHECK(Runs(a.data(), c.data(), 1) == std::vector<ByteRun>{{0, 4095}});
  CHECK(Runs(a.data(), a.data(), 0).empty());
}

}  // namespace
}  // namespace ftsync

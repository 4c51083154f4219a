// The page delta format (page_delta.h): round trips, the choice of the
// smallest form, the documented worked example, and one test per way the
// decoder must reject its input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <random>
#include <vector>

#include "diff/block_compare.h"
#include "diff/diff_test_pages.h"
#include "diff/page_delta.h"

namespace ftsync {
namespace {
using namespace internal;
using test::Page;
using Bytes = std::vector<uint8_t>;

Bytes Encode(const Page& base, const Page& cur, const DeltaOptions& o) {
  std::array<uint8_t, kMaxDeltaSize> out;
  EncodedDelta d = EncodePageDelta(base.data(), cur.data(), o, out);
  REQUIRE(d.size <= kMaxDeltaSize);
  REQUIRE(out[0] == static_cast<uint8_t>(d.kind));
  return Bytes(out.begin(), out.begin() + static_cast<long>(d.size));
}

// The expected size of the smallest encoding, from the reference answers.
size_t ExpectedSize(const Page& base, const Page& cur, const DeltaOptions& o) {
  if (base == cur) return kDeltaSameSize;
  auto runs = test::RefRuns(base.data(), cur.data(), o.merge_gap);
  size_t runs_size = kDeltaRunsHeader;
  for (auto r : runs) runs_size += kDeltaRunHeader + r.length;
  size_t blocks_size = BlocksDeltaSize(
      static_cast<size_t>(__builtin_popcountll(test::RefBlocks(base.data(), cur.data(), o.block_size))),
      o.block_size);
  size_t best = o.format == DeltaFormat::kRuns     ? runs_size
                : o.format == DeltaFormat::kBlocks ? blocks_size
                                                   : std::min(runs_size, blocks_size);
  return std::min(best, kDeltaWholeSize);
}

std::vector<DeltaOptions> AllOptions() {
  std::vector<DeltaOptions> v;
  for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256}) {
    v.push_back({DeltaFormat::kBlocks, bs, 4});
    v.push_back({DeltaFormat::kAuto, bs, 4});
  }
  for (uint16_t gap : {0, 4, 32}) v.push_back({DeltaFormat::kRuns, BlockSize::k64, gap});
  return v;
}

// Applies `delta` to a copy of `base`, requiring success.
Page Apply(const Page& base, const Bytes& delta) {
  Page page = base;
  Status s = ApplyPageDelta(delta, page);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return page;
}

// Requires ApplyPageDelta to fail with kCorruption and leave the page as it was.
void RequireRejected(const Bytes& delta, const Page& base = Page(kDiffPageSize, 0x33)) {
  Page page = base;
  Status s = ApplyPageDelta(delta, page);
  INFO("delta of " << delta.size() << " bytes: " << s.ToString());
  CHECK(s.code() == Errc::kCorruption);
  CHECK(!s.context().empty());
  CHECK(page == base);
}

// The example documented in page_delta.h.
void ExamplePages(Page* base, Page* cur) {
  *base = Page(kDiffPageSize, 0);
  *cur = *base;
  (*cur)[0x10] = 0xAA;
  (*cur)[0x11] = 0xBB;
  (*cur)[0x12] = 0xCC;
  (*cur)[0xFFF] = 0xDD;
}

TEST_CASE("page delta: round trip of every format on every test page and ISA", "[diff]") {
  test::IsaGuard guard;
  const auto pairs = test::TestPagePairs();
  for (DiffIsa isa : test::SupportedIsas()) {
    REQUIRE(SetDiffIsaForTesting(isa).ok());
    for (const auto& o : AllOptions()) {
      for (const auto& pp : pairs) {
        INFO(DiffIsaName(isa) << " format " << int(o.format) << " block " << BlockBytes(o.block_size)
                              << " gap " << o.merge_gap << ": " << pp.name);
        Bytes d = Encode(pp.base, pp.cur, o);
        CHECK(d.size() == ExpectedSize(pp.base, pp.cur, o));
        CHECK((d[0] == static_cast<uint8_t>(DeltaKind::kSame)) == (pp.base == pp.cur));
        CHECK(Apply(pp.base, d) == pp.cur);
      }
    }
  }
}

TEST_CASE("page delta: every ISA produces the same bytes", "[diff]") {
  test::IsaGuard guard;
  const auto pairs = test::TestPagePairs(99);
  for (const auto& o : AllOptions()) {
    for (const auto& pp : pairs) {
      REQUIRE(SetDiffIsaForTesting(DiffIsa::kScalar).ok());
      Bytes ref = Encode(pp.base, pp.cur, o);
      for (DiffIsa isa : test::SupportedIsas()) {
        REQUIRE(SetDiffIsaForTesting(isa).ok());
        INFO(DiffIsaName(isa) << ": " << pp.name);
        CHECK(Encode(pp.base, pp.cur, o) == ref);
      }
    }
  }
}

TEST_CASE("page delta: the worked example of page_delta.h", "[diff]") {
  Page base, cur;
  ExamplePages(&base, &cur);
  Bytes runs = Encode(base, cur, {DeltaFormat::kAuto, BlockSize::k64, 4});
  CHECK(runs == Bytes{0x04, 0x02, 0x00, 0x10, 0x00, 0x03, 0x00, 0xAA, 0xBB, 0xCC,
                      0xFF, 0x0F, 0x01, 0x00, 0xDD});
  Bytes blocks = Encode(base, cur, {DeltaFormat::kBlocks, BlockSize::k64, 4});
  REQUIRE(blocks.size() == 138);
  CHECK(Bytes(blocks.begin(), blocks.begin() + 10) ==
        Bytes{0x03, 0x06, 0x01, 0, 0, 0, 0, 0, 0, 0x80});
  CHECK(std::equal(blocks.begin() + 10, blocks.begin() + 74, cur.begin()));
  CHECK(std::equal(blocks.begin() + 74, blocks.end(), cur.begin() + 4032));
  CHECK(Apply(base, runs) == cur);
  CHECK(Apply(base, blocks) == cur);
}

TEST_CASE("page delta: forms are chosen as documented", "[diff]") {
  Page base(kDiffPageSize, 0);
  SECTION("unchanged page is SAME, one byte") {
    CHECK(Encode(base, base, {}) == Bytes{0x01});
  }
  SECTION("every byte changed is WHOLE") {
    Page cur(kDiffPageSize, 0x77);
    Bytes d = Encode(base, cur, {});
    CHECK(d[0] == 0x02);
    CHECK(d.size() == kDeltaWholeSize);
  }
  SECTION("alternating bytes: WHOLE for unmerged runs, one merged run otherwise") {
    Page cur = base;
    for (size_t i = 0; i < kDiffPageSize / 2; i += 2) cur[i] = 1;
    CHECK(Encode(base, cur, {DeltaFormat::kRuns, BlockSize::k64, 0})[0] == 0x02);  // 1024 runs
    Bytes d = Encode(base, cur, {DeltaFormat::kRuns, BlockSize::k64, 1});
    CHECK(d[0] == 0x04);
    CHECK(d.size() == 3 + 4 + 2047);
  }
  SECTION("first byte of every block: BLOCKS loses to RUNS") {
    Page cur = base;
    for (size_t i = 0; i < kDiffPageSize; i += 64) cur[i] = 1;
    Bytes d = Encode(base, cur, {DeltaFormat::kAuto, BlockSize::k64, 4});
    CHECK(d[0] == 0x04);
    CHECK(d.size() == 3 + 64 * 5);
  }
  SECTION("unmerged alternating bytes in two blocks: BLOCKS beats RUNS") {
    Page cur = base;
    for (size_t i = 128; i < 256; i += 2) cur[i] = 1;  // 64 runs: 3 + 64*5 > 2 + 8 + 2*64
    Bytes d = Encode(base, cur, {DeltaFormat::kAuto, BlockSize::k64, 0});
    CHECK(d[0] == 0x03);
    CHECK(d.size() == 2 + 8 + 2 * 64);
  }
  SECTION("BLOCKS mask widths per block size") {
    Page cur = base;
    cur[4095] = 9;
    CHECK(Encode(base, cur, {DeltaFormat::kBlocks, BlockSize::k128, 4}).size() == 2 + 4 + 128);
    Bytes d = Encode(base, cur, {DeltaFormat::kBlocks, BlockSize::k256, 4});
    CHECK(Bytes(d.begin(), d.begin() + 4) == Bytes{0x03, 0x08, 0x00, 0x80});
    CHECK(d.size() == 2 + 2 + 256);
  }
}

TEST_CASE("page delta: decoder rejects a page of the wrong size", "[diff]") {
  Page small(4095, 0);
  Status s = ApplyPageDelta(Bytes{0x01}, small);
  CHECK(s.code() == Errc::kInvalidArgument);
  Page big(8192, 0);
  CHECK(ApplyPageDelta(Bytes{0x01}, big).code() == Errc::kInvalidArgument);
}

TEST_CASE("page delta: decoder rejects empty input and unknown kinds", "[diff]") {
  RequireRejected({});
  for (uint8_t k : {0x00, 0x05, 0x10, 0x80, 0xFF}) RequireRejected({k});
}

TEST_CASE("page delta: decoder rejects SAME and WHOLE of the wrong length", "[diff]") {
  RequireRejected({0x01, 0x00});
  Bytes whole(kDeltaWholeSize, 0xAB);
  whole[0] = 0x02;
  Page page(kDiffPageSize, 0);
  REQUIRE(ApplyPageDelta(whole, page).ok());
  CHECK(page == Page(kDiffPageSize, 0xAB));
  RequireRejected(Bytes(whole.begin(), whole.end() - 1));
  Bytes longer = whole;
  longer.push_back(0);
  RequireRejected(longer);
}

TEST_CASE("page delta: decoder rejects bad BLOCKS", "[diff]") {
  SECTION("block shift outside 6..8") {
    for (uint8_t shift : {0, 5, 9, 12, 255}) RequireRejected({0x03, shift, 0, 0, 0, 0, 0, 0, 0, 0});
  }
  SECTION("no shift") { RequireRejected({0x03}); }
  SECTION("truncated mask") { RequireRejected({0x03, 0x06, 0x01, 0x00}); }
  SECTION("fewer block bytes than the mask names") {
    Bytes d{0x03, 0x08, 0x03, 0x00};  // two 256-byte blocks
    d.resize(4 + 256 + 255, 0x11);
    RequireRejected(d);
  }
  SECTION("more bytes than the mask names") {
    Bytes d{0x03, 0x07, 0x01, 0x00, 0x00, 0x00};  // one 128-byte block
    d.resize(6 + 128 + 1, 0x11);
    RequireRejected(d);
  }
}

TEST_CASE("page delta: decoder rejects bad RUNS", "[diff]") {
  SECTION("truncated count") {
    RequireRejected({0x04});
    RequireRejected({0x04, 0x01});
  }
  SECTION("count larger than the runs present") {
    RequireRejected({0x04, 0x02, 0x00, 0x10, 0x00, 0x01, 0x00, 0xAA});
  }
  SECTION("truncated run header") { RequireRejected({0x04, 0x01, 0x00, 0x10, 0x00, 0x01}); }
  SECTION("truncated run bytes") { RequireRejected({0x04, 0x01, 0x00, 0x10, 0x00, 0x03, 0x00, 0xAA}); }
  SECTION("bytes after the last run") {
    RequireRejected({0x04, 0x01, 0x00, 0x10, 0x00, 0x01, 0x00, 0xAA, 0x00});
    RequireRejected({0x04, 0x00, 0x00, 0x00});
  }
  SECTION("run of length zero") { RequireRejected({0x04, 0x01, 0x00, 0x10, 0x00, 0x00, 0x00}); }
  SECTION("run past the page end") {
    RequireRejected({0x04, 0x01, 0x00, 0xFF, 0x0F, 0x02, 0x00, 0xAA, 0xBB});
    Bytes d{0x04, 0x01, 0x00, 0xFF, 0xFF, 0x01, 0x00, 0xAA};  // offset 65535
    RequireRejected(d);
    Bytes big{0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x10};  // length 4097
    big.resize(7 + 4097, 0);
    RequireRejected(big);
  }
  SECTION("overlapping runs") {
    RequireRejected({0x04, 0x02, 0x00, 0x10, 0x00, 0x02, 0x00, 0xAA, 0xBB,  //
                     0x11, 0x00, 0x01, 0x00, 0xCC});
  }
  SECTION("runs out of order") {
    RequireRejected({0x04, 0x02, 0x00, 0x20, 0x00, 0x01, 0x00, 0xAA,  //
                     0x10, 0x00, 0x01, 0x00, 0xCC});
  }
  SECTION("adjacent runs and the empty list are accepted") {
    Page page(kDiffPageSize, 0);
    Bytes d{0x04, 0x02, 0x00, 0x10, 0x00, 0x01, 0x00, 0xAA, 0x11, 0x00, 0x01, 0x00, 0xBB};
    REQUIRE(ApplyPageDelta(d, page).ok());
    CHECK(page[0x10] == 0xAA);
    CHECK(page[0x11] == 0xBB);
    CHECK(ApplyPageDelta(Bytes{0x04, 0x00, 0x00}, page).ok());
  }
}

TEST_CASE("page delta: every strict prefix and every extension of a delta is rejected", "[diff]") {
  const auto pairs = test::TestPagePairs(3);
  for (const auto& o : AllOptions()) {
    for (size_t k = 0; k < pairs.size(); k += 5) {
      const auto& pp = pairs[k];
      INFO(pp.name);
      Bytes d = Encode(pp.base, pp.cur, o);
      for (size_t n = 0; n < d.size(); n += (d.size() > 600 ? 37 : 1))
        RequireRejected(Bytes(d.begin(), d.begin() + static_cast<long>(n)), pp.base);
      Bytes longer = d;
      longer.push_back(0);
      RequireRejected(longer, pp.base);
    }
  }
}

TEST_CASE("page delta: decoder survives random corruption", "[diff]") {
  // Flipped bytes must give either a clean rejection or a page; never a
  // crash (run under ASan to see out-of-bounds accesses).
  std::mt19937_64 rng(77);
  const auto pairs = test::TestPagePairs(11);
  int rejected = 0, accepted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const auto& pp = pairs[rng() % pairs.size()];
    DeltaOptions o = AllOptions()[rng() % AllOptions().size()];
    Bytes d = Encode(pp.base, pp.cur, o);
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      size_t at = d.size() > 16 && rng() % 2 ? rng() % 16 : rng() % d.size();  // headers often
      d[at] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    if (rng() % 4 == 0) d.resize(rng() % (d.size() + 8), 0x5C);
    Page page = pp.base;
    Status s = ApplyPageDelta(d, page);
    if (s.ok()) {
      ++accepted;
    } else {
      ++rejected;
      REQUIRE(s.code() == Errc::kCorruption);
      REQUIRE(page == pp.base);
    }
  }
  CHECK(rejected > 0);
  CHECK(accepted > 0);
}

}  // namespace
}  // namespace ftsync

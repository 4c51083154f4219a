// The shadow store (shadow_store.h): a backup fed only by its encodings stays
// equal to the primary, in both modes, with evictions; the memory bound and
// the LRU order hold.
#include <catch2/catch.hpp>

#include <array>
#include <map>
#include <random>
#include <vector>

#include "diff/diff_test_pages.h"
#include "diff/shadow_store.h"

namespace ftsync {
namespace {
using namespace internal;
using test::Page;

std::unique_ptr<ShadowStore> Make(ShadowOptions o) {
  auto s = ShadowStore::Create(o);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(*s);
}

// Changes `page` the way a guest might, chosen by `kind`.
void Mutate(Page& page, std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 0:  // rewritten with the same contents
      break;
    case 1:  // one byte
      test::Flip(page, rng() % kDiffPageSize);
      break;
    case 2:  // a few scattered bytes
      for (int k = 0; k < 20; ++k) test::Flip(page, rng() % kDiffPageSize, uint8_t(rng() | 1));
      break;
    case 3: {  // a run
      size_t off = rng() % kDiffPageSize, len = 1 + rng() % 300;
      for (size_t i = off; i < off + len && i < kDiffPageSize; ++i) test::Flip(page, i);
      break;
    }
    case 4:  // block edges
      test::Flip(page, 63);
      test::Flip(page, 64);
      test::Flip(page, 4095);
      break;
    default:  // everything
      page = test::RandomPage(rng);
  }
}

// Primary memory, a backup fed only by encodings, a shadow store with room
// for fewer pages than the guest has.
void RunModel(const ShadowOptions& o, size_t pages, int epochs) {
  auto store = Make(o);
  std::mt19937_64 rng(2024);
  std::vector<Page> primary(pages), backup(pages, Page(kDiffPageSize, 0));
  std::vector<uint64_t> backup_version(pages, 0);
  for (auto& p : primary) p = test::RandomPage(rng);
  std::array<uint8_t, kMaxDeltaSize> out;
  size_t hits = 0, deltas = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    // Dirty a random subset, skewed to low pfns (a hot set).
    std::map<uint64_t, bool> dirty;
    size_t n = 1 + rng() % (pages / 2);
    for (size_t k = 0; k < n; ++k) {
      uint64_t pfn = rng() % 2 ? rng() % (pages / 8 + 1) : rng() % pages;
      Mutate(primary[pfn], rng);
      dirty[pfn] = true;
    }
    if (epoch == 1)
      for (uint64_t pfn = 0; pfn < pages; ++pfn) dirty[pfn] = true;
    for (auto& [pfn, unused] : dirty) {
      ShadowEncoded e = store->Encode(pfn, primary[pfn].data(), epoch, out);
      REQUIRE(e.size <= kMaxDeltaSize);
      if (e.hit) {
        ++hits;
        REQUIRE(e.base_version == backup_version[pfn]);  // the base the backup holds
      } else {
        REQUIRE(e.kind == DeltaKind::kWhole);
      }
      if (e.kind != DeltaKind::kWhole) ++deltas;
      Status s = ApplyPageDelta(std::span<const uint8_t>(out.data(), e.size), backup[pfn]);
      REQUIRE(s.ok());
      backup_version[pfn] = epoch;
    }
    for (uint64_t pfn = 0; pfn < pages; ++pfn) {
      INFO("epoch " << epoch << " pfn " << pfn);
      REQUIRE(backup[pfn] == primary[pfn]);
    }
    REQUIRE(store->size() <= store->capacity());
    REQUIRE(store->memory_bytes() <= o.memory_budget);
  }
  CHECK(hits > 0);
  CHECK(deltas > 0);
  CHECK(store->stats().evictions > 0);
  CHECK(store->stats().hits == hits);
}

TEST_CASE("shadow store: a backup fed by its encodings equals the primary", "[diff]") {
  for (ShadowMode mode : {ShadowMode::kCopy, ShadowMode::kBlockHash}) {
    for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256}) {
      for (DeltaFormat f : {DeltaFormat::kAuto, DeltaFormat::kBlocks, DeltaFormat::kRuns}) {
        if (mode == ShadowMode::kBlockHash && f != DeltaFormat::kAuto) continue;
        INFO(ShadowModeName(mode) << " block " << BlockBytes(bs) << " format " << int(f));
        ShadowOptions o;
        o.mode = mode;
        o.delta = {f, bs, 4};
        o.ways = 4;
        o.hash_seed = 12345;
        // Room for about 40 of the 128 pages.
        size_t per_page = mode == ShadowMode::kCopy ? kDiffPageSize + 32 : BlocksPerPage(bs) * 8 + 32;
        o.memory_budget = 40 * per_page + 17;
        RunModel(o, 128, 40);
      }
    }
  }
}

TEST_CASE("shadow store: memory stays within the budget", "[diff]") {
  for (ShadowMode mode : {ShadowMode::kCopy, ShadowMode::kBlockHash}) {
    for (size_t budget : {size_t{1} << 16, size_t{100000}, size_t{1} << 20, size_t{32} << 20}) {
      for (size_t ways : {1, 8, 16}) {
        ShadowOptions o;
        o.mode = mode;
        o.memory_budget = budget;
        o.ways = ways;
        INFO(ShadowModeName(mode) << " budget " << budget << " ways " << ways);
        size_t per_page = mode == ShadowMode::kCopy ? 4128 : 544;
        if (budget < ways * per_page) {
          CHECK(ShadowStore::Create(o).status().code() == Errc::kInvalidArgument);
          continue;
        }
        auto store = Make(o);
        CHECK(store->memory_bytes() <= budget);
        CHECK(store->capacity() % ways == 0);
        // Uses the budget up to one set's worth (and a page of rounding).
        CHECK(store->memory_bytes() + ways * per_page + 4096 > budget);
        std::array<uint8_t, kMaxDeltaSize> out;
        Page page(kDiffPageSize, 1);
        for (uint64_t pfn = 0; pfn < 3 * store->capacity(); ++pfn) (void)store->Encode(pfn * 7919, page.data(), 1, out);
        CHECK(store->size() <= store->capacity());
        CHECK(store->size() > store->capacity() / 2);
        CHECK(store->stats().evictions > 0);
      }
    }
  }
  ShadowOptions o;
  CHECK(o.memory_budget / 4128 / 8 * 8 == 8128);
  CHECK(Make(o)->capacity() == 8128);
}

TEST_CASE("shadow store: Create rejects bad options", "[diff]") {
  ShadowOptions o;
  o.ways = 0;
  CHECK(ShadowStore::Create(o).status().code() == Errc::kInvalidArgument);
  o.ways = 65;
  CHECK(ShadowStore::Create(o).status().code() == Errc::kInvalidArgument);
  o.ways = 8;
  o.memory_budget = 8 * 4128 - 1;
  CHECK(ShadowStore::Create(o).status().code() == Errc::kInvalidArgument);
  o.memory_budget = 8 * 4128;
  CHECK(ShadowStore::Create(o).ok());
  o.mode = ShadowMode::kBlockHash;  // 8 * 512 bytes of hashes: one page, plus 8 * 32
  o.memory_budget = 4096 + 8 * 32 - 1;
  CHECK(ShadowStore::Create(o).status().code() == Errc::kInvalidArgument);
  o.memory_budget = 4096 + 8 * 32;
  CHECK(ShadowStore::Create(o).ok());
}

TEST_CASE("shadow store: least recently used page of a set is evicted", "[diff]") {
  for (ShadowMode mode : {ShadowMode::kCopy, ShadowMode::kBlockHash}) {
    ShadowOptions o;
    o.mode = mode;
    o.ways = 4;
    // One set of 4 (hash mode: the entries' page, not two sets' worth).
    o.memory_budget = mode == ShadowMode::kCopy ? 4 * 4128 : 4096 + 4 * 32;
    auto store = Make(o);
    REQUIRE(store->capacity() == 4);
    std::array<uint8_t, kMaxDeltaSize> out;
    Page page(kDiffPageSize, 0);
    for (uint64_t pfn : {10, 11, 12, 13}) CHECK(!store->Encode(pfn, page.data(), 1, out).hit);
    CHECK(store->Encode(10, page.data(), 2, out).hit);  // 11 is now the oldest
    CHECK(!store->Encode(14, page.data(), 2, out).hit);
    CHECK(!store->Contains(11));
    for (uint64_t pfn : {10, 12, 13, 14}) CHECK(store->Contains(pfn));
    CHECK(store->stats().evictions == 1);
  }
}

TEST_CASE("shadow store: Invalidate and Clear make the next send WHOLE", "[diff]") {
  for (ShadowMode mode : {ShadowMode::kCopy, ShadowMode::kBlockHash}) {
    ShadowOptions o;
    o.mode = mode;
    o.memory_budget = 1 << 20;
    auto store = Make(o);
    std::array<uint8_t, kMaxDeltaSize> out;
    Page page(kDiffPageSize, 5);
    (void)store->Encode(1, page.data(), 1, out);
    (void)store->Encode(2, page.data(), 1, out);
    ShadowEncoded e = store->Encode(1, page.data(), 2, out);
    CHECK(e.hit);
    CHECK(e.kind == DeltaKind::kSame);
    CHECK(e.base_version == 1);
    store->Invalidate(1);
    CHECK(!store->Contains(1));
    e = store->Encode(1, page.data(), 3, out);
    CHECK(!e.hit);
    CHECK(e.kind == DeltaKind::kWhole);
    CHECK(e.size == kDeltaWholeSize);
    store->Clear();
    CHECK(store->size() == 0);
    CHECK(!store->Encode(2, page.data(), 4, out).hit);
  }
}

TEST_CASE("shadow store: hash mode finds a one-byte change in every block", "[diff]") {
  for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256}) {
    ShadowOptions o;
    o.mode = ShadowMode::kBlockHash;
    o.delta.block_size = bs;
    o.memory_budget = 1 << 16;
    auto store = Make(o);
    std::mt19937_64 rng(9);
    Page page = test::RandomPage(rng), backup = page;
    std::array<uint8_t, kMaxDeltaSize> out;
    (void)store->Encode(0, page.data(), 0, out);
    for (size_t i = 0; i < kDiffPageSize; i += 61) {
      test::Flip(page, i);
      ShadowEncoded e = store->Encode(0, page.data(), i, out);
      INFO("block " << BlockBytes(bs) << " byte " << i);
      REQUIRE(e.kind == DeltaKind::kBlocks);
      CHECK(e.size == BlocksDeltaSize(1, bs));
      REQUIRE(ApplyPageDelta(std::span<const uint8_t>(out.data(), e.size), backup).ok());
      REQUIRE(backup == page);
    }
  }
}

TEST_CASE("shadow store: a fully rewritten page in the store is sent WHOLE", "[diff]") {
  for (ShadowMode mode : {ShadowMode::kCopy, ShadowMode::kBlockHash}) {
    ShadowOptions o;
    o.mode = mode;
    o.memory_budget = 1 << 20;
    auto store = Make(o);
    std::array<uint8_t, kMaxDeltaSize> out;
    Page a(kDiffPageSize, 1), b(kDiffPageSize, 2);
    (void)store->Encode(7, a.data(), 1, out);
    ShadowEncoded e = store->Encode(7, b.data(), 2, out);
    CHECK(e.hit);
    CHECK(e.kind == DeltaKind::kWhole);
    e = store->Encode(7, a.data(), 3, out);  // the store holds b now
    CHECK(e.kind == DeltaKind::kWhole);
    CHECK(store->Encode(7, a.data(), 4, out).kind == DeltaKind::kSame);
  }
}

}  // namespace
}  // namespace ftsync

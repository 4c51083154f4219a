#include "testing/workload.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <vector>

#include "testing/fake_domain.h"

namespace ftsync::testing {
namespace {

constexpr uint64_t kFrames = 256;
constexpr size_t kPage = 4096;

bool AllZero(std::span<const uint8_t> f) {
  return std::all_of(f.begin(), f.end(), [](uint8_t x) { return x == 0; });
}

std::set<uint64_t> Touched(const Workload& w) {
  std::set<uint64_t> s;
  for (const auto& r : w.last_step()) s.insert(r.pfn);
  return s;
}

TEST_CASE("Workload: names round-trip", "[workload]") {
  std::set<std::string> names;
  for (WorkloadKind k : AllWorkloadKinds()) {
    std::string name = WorkloadName(k);
    names.insert(name);
    auto parsed = ParseWorkloadKind(name);
    REQUIRE(parsed.ok());
    CHECK(*parsed == k);
  }
  CHECK(names == std::set<std::string>{"sequential", "hot", "sparse", "scribble",
                                       "zero", "mixed"});
  for (const char* bad : {"", "Hot", "sequentia", "mixed ", "bogus"}) {
    auto r = ParseWorkloadKind(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::kInvalidArgument);
    CHECK(r.status().context().find("'" + std::string(bad) + "'") != std::string::npos);
  }
}

TEST_CASE("Workload: every kind is deterministic by seed", "[workload]") {
  for (WorkloadKind k : AllWorkloadKinds()) {
    INFO("workload " << WorkloadName(k));
    FakeDomain a(kFrames, kPage), b(kFrames, kPage), c(kFrames, kPage);
    Workload wa(k, 42), wb(k, 42), wc(k, 43);
    for (int step = 0; step < 5; ++step) {
      REQUIRE(wa.Step(&a).ok());
      REQUIRE(wb.Step(&b).ok());
      REQUIRE(wc.Step(&c).ok());
      REQUIRE(wa.last_step().size() == wb.last_step().size());
      for (size_t i = 0; i < wa.last_step().size(); ++i) {
        CHECK(wa.last_step()[i].pfn == wb.last_step()[i].pfn);
        CHECK(wa.last_step()[i].offset == wb.last_step()[i].offset);
        CHECK(wa.last_step()[i].length == wb.last_step()[i].length);
      }
    }
    CHECK(a.memory() == b.memory());
    CHECK(a.state() == b.state());
    CHECK(a.memory() != c.memory());
    CHECK(wa.steps() == 5);
  }
}

TEST_CASE("Workload: each step writes and the dirty log sees exactly those frames",
          "[workload]") {
  for (WorkloadKind k : AllWorkloadKinds()) {
    INFO("workload " << WorkloadName(k));
    FakeDomain d(kFrames, kPage);
    REQUIRE(d.EnableDirtyLog().ok());
    Workload w(k, 7);
    for (int step = 0; step < 4; ++step) {
      auto before = d.memory();
      REQUIRE(w.Step(&d).ok());
      CHECK(w.last_step().size() == 64);
      CHECK(d.memory() != before);
      DirtyBitmap bm;
      REQUIRE(d.FetchAndClearDirty(&bm).ok());
      std::vector<uint64_t> dirty;
      bm.AppendSetBits(&dirty);
      auto touched = Touched(w);
      CHECK(dirty == std::vector<uint64_t>(touched.begin(), touched.end()));
      // Frames outside the touched set are unchanged.
      for (uint64_t pfn = 0; pfn < kFrames; ++pfn) {
        if (touched.count(pfn)) continue;
        REQUIRE(std::equal(d.Frame(pfn).begin(), d.Frame(pfn).end(),
                           before.begin() + pfn * kPage));
      }
    }
  }
}

TEST_CASE("Workload: sequential writes consecutive frames, wrapping", "[workload]") {
  FakeDomain d(10, 512);
  Workload w(WorkloadKind::kSequentialWriter, 3, {.writes_per_step = 7});
  std::vector<uint64_t> pfns;
  for (int step = 0; step < 4; ++step) {
    REQUIRE(w.Step(&d).ok());
    REQUIRE(w.last_step().size() == 7);
    for (const auto& r : w.last_step()) {
      CHECK(r.offset == 0);
      CHECK(r.length == 512);
      pfns.push_back(r.pfn);
    }
  }
  // 28 writes over 10 frames: consecutive across steps, wrapping at the end.
  bool wrapped = false;
  for (size_t i = 1; i < pfns.size(); ++i) {
    CHECK(pfns[i] == (pfns[i - 1] + 1) % 10);
    if (pfns[i] == 0) wrapped = true;
  }
  CHECK(wrapped);
}

TEST_CASE("Workload: hot pages concentrate on the hot set", "[workload]") {
  FakeDomain d(1000, 256);
  Workload w(WorkloadKind::kHotPages, 11);
  uint64_t hot = 0, total = 0;
  std::set<uint64_t> touched;
  for (int step = 0; step < 50; ++step) {
    REQUIRE(w.Step(&d).ok());
    const auto& hs = w.hot_set();
    for (const auto& r : w.last_step()) {
      ++total;
      touched.insert(r.pfn);
      if (std::binary_search(hs.begin(), hs.end(), r.pfn)) ++hot;
      CHECK(r.length >= 8);
      CHECK(r.length <= 128);
    }
  }
  REQUIRE(w.hot_set().size() == 50);  // 5% of 1000
  CHECK(std::set<uint64_t>(w.hot_set().begin(), w.hot_set().end()).size() == 50);
  CHECK(total == 50 * 64);
  // 90% hot by design (plus cold picks that land in the hot set).
  CHECK(hot >= total * 85 / 100);
  CHECK(hot < total);  // there are some cold writes
  // Far fewer distinct frames than uniform writes would reach (~960).
  CHECK(touched.size() < 400);

  // With no cold writes every write hits the hot set.
  FakeDomain d2(1000, 256);
  Workload w2(WorkloadKind::kHotPages, 11, {.cold_percent = 0});
  for (int step = 0; step < 10; ++step) {
    REQUIRE(w2.Step(&d2).ok());
    for (const auto& r : w2.last_step())
      CHECK(std::binary_search(w2.hot_set().begin(), w2.hot_set().end(), r.pfn));
  }
}

TEST_CASE("Workload: sparse random writes distinct whole pages everywhere",
          "[workload]") {
  FakeDomain d(kFrames, kPage);
  Workload w(WorkloadKind::kSparseRandom, 5);
  std::set<uint64_t> all;
  for (int step = 0; step < 20; ++step) {
    REQUIRE(w.Step(&d).ok());
    CHECK(Touched(w).size() == 64);  // distinct within a step
    for (const auto& r : w.last_step()) {
      CHECK(r.length == kPage);
      all.insert(r.pfn);
    }
  }
  CHECK(all.size() > kFrames * 9 / 10);

  // More writes than frames: every frame exactly once.
  FakeDomain small(16, 64);
  Workload ws(WorkloadKind::kSparseRandom, 5, {.writes_per_step = 100});
  REQUIRE(ws.Step(&small).ok());
  CHECK(ws.last_step().size() == 16);
  CHECK(Touched(ws).size() == 16);
}

TEST_CASE("Workload: scribbles change at most max_scribble bytes per page",
          "[workload]") {
  FakeDomain d(kFrames, kPage);
  Workload w(WorkloadKind::kSubPageScribbles, 9);
  std::set<size_t> lengths;
  for (int step = 0; step < 10; ++step) {
    auto before = d.memory();
    REQUIRE(w.Step(&d).ok());
    CHECK(Touched(w).size() == 64);
    for (const auto& r : w.last_step()) {
      REQUIRE(r.length >= 1);
      REQUIRE(r.length <= 64);
      REQUIRE(r.offset + r.length <= kPage);
      lengths.insert(r.length);
      size_t changed = 0;
      auto f = d.Frame(r.pfn);
      for (size_t i = 0; i < kPage; ++i) {
        if (f[i] == before[r.pfn * kPage + i]) continue;
        ++changed;
        CHECK(i >= r.offset);
        CHECK(i < r.offset + r.length);
      }
      CHECK(changed == r.length);  // every scribbled byte really changes
    }
  }
  CHECK(lengths.size() > 20);  // lengths vary over 1..64
  CHECK(*lengths.rbegin() <= 64);

  FakeDomain d2(kFrames, kPage);
  Workload w2(WorkloadKind::kSubPageScribbles, 9, {.max_scribble = 4});
  REQUIRE(w2.Step(&d2).ok());
  for (const auto& r : w2.last_step()) CHECK(r.length <= 4);
}

TEST_CASE("Workload: zero pages clears frames and refills some", "[workload]") {
  FakeDomain d(kFrames, kPage);
  Workload w(WorkloadKind::kZeroPages, 13);
  uint64_t zeroed = 0, refilled = 0;
  for (int step = 0; step < 10; ++step) {
    REQUIRE(w.Step(&d).ok());
    for (const auto& r : w.last_step()) {
      CHECK(r.offset == 0);
      CHECK(r.length == kPage);
      if (r.zeroed) {
        ++zeroed;
        CHECK(AllZero(d.Frame(r.pfn)));
      } else {
        ++refilled;
        CHECK_FALSE(AllZero(d.Frame(r.pfn)));
      }
    }
  }
  CHECK(zeroed > refilled);  // 75% / 25% by default
  CHECK(refilled > 0);

  FakeDomain d2(kFrames, kPage);
  Workload w2(WorkloadKind::kZeroPages, 13, {.refill_percent = 0});
  REQUIRE(w2.Step(&d2).ok());
  for (const auto& r : w2.last_step()) {
    CHECK(r.zeroed);
    CHECK(AllZero(d2.Frame(r.pfn)));
  }
}

TEST_CASE("Workload: mixed blends the kinds", "[workload]") {
  FakeDomain d(kFrames, kPage);
  Workload w(WorkloadKind::kMixed, 17);
  uint64_t zeroed = 0, whole = 0, small = 0, partial = 0;
  for (int step = 0; step < 20; ++step) {
    REQUIRE(w.Step(&d).ok());
    for (const auto& r : w.last_step()) {
      if (r.zeroed) ++zeroed;
      else if (r.length == kPage) ++whole;
      else if (r.length <= 64) ++small;
      else ++partial;
    }
  }
  CHECK(zeroed > 0);
  CHECK(whole > 0);
  CHECK(small > 0);
  CHECK(partial > 0);
}

TEST_CASE("Workload: Step fails on a suspended domain and on bad input", "[workload]") {
  FakeDomain d(kFrames, kPage);
  Workload w(WorkloadKind::kSparseRandom, 1);
  REQUIRE(d.Suspend().ok());
  auto before = d.memory();
  CHECK(w.Step(&d).code() == Errc::kFailedPrecondition);
  CHECK(w.last_step().empty());
  CHECK(d.memory() == before);
  CHECK(d.counters().suspended_writes == 1);  // stops at the first refusal
  REQUIRE(d.Resume().ok());
  CHECK(w.Step(&d).ok());

  CHECK(w.Step(nullptr).code() == Errc::kInvalidArgument);
  FakeDomain other(kFrames + 1, kPage);
  CHECK(w.Step(&other).code() == Errc::kInvalidArgument);

  Workload bad1(WorkloadKind::kHotPages, 1, {.hot_percent = 0});
  CHECK(bad1.Step(&d).code() == Errc::kInvalidArgument);
  Workload bad2(WorkloadKind::kSubPageScribbles, 1, {.max_scribble = 0});
  CHECK(bad2.Step(&d).code() == Errc::kInvalidArgument);
  Workload bad3(WorkloadKind::kZeroPages, 1, {.refill_percent = 101});
  CHECK(bad3.Step(&d).code() == Errc::kInvalidArgument);
}

}  // namespace
}  // namespace ftsync::testing

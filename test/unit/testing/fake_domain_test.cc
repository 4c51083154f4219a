#include "testing/fake_domain.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace ftsync::testing {
namespace {

std::vector<uint64_t> SetBits(const DirtyBitmap& b) {
  std::vector<uint64_t> v;
  b.AppendSetBits(&v);
  return v;
}

std::vector<uint8_t> Bytes(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }

TEST_CASE("FakeDomain: shape and seeded initial contents", "[fake_domain]") {
  FakeDomain a(16, 4096, "fake:1", 7);
  FakeDomain b(16, 4096, "fake:2", 7);
  FakeDomain c(16, 4096, "fake:3", 8);
  CHECK(a.Name() == "fake:1");
  CHECK(a.PageSize() == 4096);
  CHECK(a.FrameCount() == 16);
  CHECK(a.memory().size() == 16 * 4096);
  CHECK(a.state().size() == FakeDomain::kStateSize);
  CHECK(a.memory() == b.memory());
  CHECK(a.state() == b.state());
  CHECK(a.memory() != c.memory());
  // Every frame holds non-zero content, and frames differ from each other.
  for (uint64_t pfn = 0; pfn < 16; ++pfn) {
    auto f = a.Frame(pfn);
    REQUIRE(f.size() == 4096);
    CHECK(std::any_of(f.begin(), f.end(), [](uint8_t x) { return x != 0; }));
  }
  CHECK(!std::equal(a.Frame(0).begin(), a.Frame(0).end(), a.Frame(1).begin()));
  CHECK(a.Frame(16).empty());
  CHECK_FALSE(a.suspended());
  CHECK_FALSE(a.dirty_log_enabled());
  CHECK(a.state_counter() == 0);
}

TEST_CASE("FakeDomain: Write stores bytes and advances the CPU state", "[fake_domain]") {
  FakeDomain d(4, 512);
  auto before = d.state();
  std::vector<uint8_t> data = {1, 2, 3, 4, 5};
  REQUIRE(d.Write(2, 100, data).ok());
  CHECK(std::memcmp(d.Frame(2).data() + 100, data.data(), data.size()) == 0);
  CHECK(d.memory()[2 * 512 + 100] == 1);
  CHECK(d.state() != before);
  CHECK(d.state_counter() == 1);
  CHECK(d.counters().pages_written == 1);
  CHECK(d.counters().bytes_written == 5);

  d.Fill(3, 0xAB);
  for (uint8_t x : d.Frame(3)) REQUIRE(x == 0xAB);
  CHECK(d.state_counter() == 2);
  CHECK(d.counters().bytes_written == 5 + 512);
}

TEST_CASE("FakeDomain: Write rejects out-of-range pfn and overruns", "[fake_domain]") {
  FakeDomain d(4, 512);
  auto mem = d.memory();
  CHECK(d.Write(4, 0, Bytes(1, 9)).code() == Errc::kInvalidArgument);
  CHECK(d.Write(0, 510, Bytes(3, 9)).code() == Errc::kInvalidArgument);
  CHECK(d.Write(0, 513, Bytes(0, 9)).code() == Errc::kInvalidArgument);
  CHECK(d.Write(0, 509, Bytes(3, 9)).ok());  // ends exactly at the page end
  d.Fill(99, 0);                              // ignored
  CHECK(d.counters().pages_written == 1);
  CHECK(std::equal(mem.begin() + 512, mem.end(), d.memory().begin() + 512));
}

TEST_CASE("FakeDomain: dirty log reports exactly the frames written", "[fake_domain]") {
  const uint64_t kFrames = 300;  // not a multiple of 64
  FakeDomain d(kFrames, 256);
  DirtyBitmap bm;
  CHECK(d.FetchAndClearDirty(&bm).code() == Errc::kFailedPrecondition);

  REQUIRE(d.Write(5, 0, Bytes(4, 1)).ok());  // before logging: not reported
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Write(6, 0, Bytes(4, 1)).ok());
  REQUIRE(d.EnableDirtyLog().ok());  // idempotent: keeps the log (pfn 6)

  uint64_t x = 12345;
  for (int round = 0; round < 5; ++round) {
    std::set<uint64_t> expect;  // independent record of writes
    if (round == 0) expect.insert(6);
    int writes = 1 + round * 37;
    for (int i = 0; i < writes; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t pfn = (x >> 33) % kFrames;
      REQUIRE(d.Write(pfn, (x >> 20) % 200, Bytes(8, uint8_t(i))).ok());
      expect.insert(pfn);
    }
    if (round == 2) {
      d.Fill(kFrames - 1, 0);
      expect.insert(kFrames - 1);
    }
    REQUIRE(d.FetchAndClearDirty(&bm).ok());
    CHECK(bm.size() == kFrames);
    CHECK(SetBits(bm) == std::vector<uint64_t>(expect.begin(), expect.end()));
  }
  // Cleared by the fetch.
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  CHECK(d.FetchAndClearDirty(nullptr).code() == Errc::kInvalidArgument);

  // Disabling drops the log; writes while off are not reported after re-enable.
  REQUIRE(d.Write(7, 0, Bytes(1, 1)).ok());
  REQUIRE(d.DisableDirtyLog().ok());
  REQUIRE(d.DisableDirtyLog().ok());
  REQUIRE(d.Write(8, 0, Bytes(1, 1)).ok());
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Write(9, 0, Bytes(1, 1)).ok());
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{9});
  CHECK(d.counters().fetch_and_clear_dirty == 9);
}

TEST_CASE("FakeDomain: Redirty puts frames back into the log", "[fake_domain]") {
  FakeDomain d(100, 64);
  std::vector<uint64_t> back = {0, 3, 64, 99};
  CHECK(d.Redirty(back).code() == Errc::kFailedPrecondition);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Write(10, 0, Bytes(1, 1)).ok());
  REQUIRE(d.Redirty(back).ok());
  DirtyBitmap bm;
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{0, 3, 10, 64, 99});

  // One bad pfn rejects the whole call: no bit is set.
  std::vector<uint64_t> bad = {1, 100};
  CHECK(d.Redirty(bad).code() == Errc::kInvalidArgument);
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  CHECK(d.counters().redirty == 3);
}

TEST_CASE("FakeDomain: PeekDirty reads the log without clearing it",
          "[fake_domain]") {
  FakeDomain d(100, 64);
  CHECK(d.SupportsPeekDirty());
  CHECK(d.SupportsRearmDirty());
  DirtyBitmap bm;
  CHECK(d.PeekDirty(&bm).code() == Errc::kFailedPrecondition);  // log off
  REQUIRE(d.EnableDirtyLog().ok());
  CHECK(d.PeekDirty(nullptr).code() == Errc::kInvalidArgument);
  REQUIRE(d.Write(7, 0, Bytes(1, 1)).ok());
  REQUIRE(d.Write(70, 3, Bytes(2, 2)).ok());
  std::vector<uint64_t> back = {99};
  REQUIRE(d.Redirty(back).ok());
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.size() == 100);
  CHECK(SetBits(bm) == std::vector<uint64_t>{7, 70, 99});
  // Again: nothing was cleared; a new write joins.
  REQUIRE(d.Write(8, 0, Bytes(1, 1)).ok());
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{7, 8, 70, 99});
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{7, 8, 70, 99});
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  CHECK(d.counters().peek_dirty == 5);
}

TEST_CASE("FakeDomain: RearmDirty clears the listed frames until rewritten",
          "[fake_domain]") {
  FakeDomain d(100, 64);
  std::vector<uint64_t> some = {7, 70};
  CHECK(d.RearmDirty(some).code() == Errc::kFailedPrecondition);  // log off
  REQUIRE(d.EnableDirtyLog().ok());
  for (uint64_t p : {5, 7, 70, 71}) REQUIRE(d.Write(p, 0, Bytes(1, 9)).ok());
  std::vector<uint64_t> redirtied = {71};
  REQUIRE(d.Redirty(redirtied).ok());
  // Unsorted, with a duplicate, a clean frame (12) and a redirtied one (71).
  std::vector<uint64_t> rearm = {71, 7, 12, 7};
  REQUIRE(d.RearmDirty(rearm).ok());
  DirtyBitmap bm;
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{5, 70});
  // A re-armed frame written again is reported again.
  REQUIRE(d.Write(7, 1, Bytes(1, 3)).ok());
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{5, 7, 70});
  // One bad pfn rejects the whole call: nothing changes.
  std::vector<uint64_t> bad = {5, 100};
  CHECK(d.RearmDirty(bad).code() == Errc::kInvalidArgument);
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{5, 7, 70});
  CHECK(d.counters().rearm_dirty == 3);
  CHECK(d.counters().frames_rearmed == 4);
}

TEST_CASE("FakeDomain: speculation support can be switched off",
          "[fake_domain]") {
  FakeDomain d(16, 64, "fake:5");
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Write(3, 0, Bytes(1, 1)).ok());
  DirtyBitmap bm;
  std::vector<uint64_t> three = {3};

  d.SetSpeculationSupport(/*peek=*/true, /*rearm=*/false);  // like Xen
  CHECK(d.SupportsPeekDirty());
  CHECK_FALSE(d.SupportsRearmDirty());
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{3});
  Status st = d.RearmDirty(three);
  CHECK(st.code() == Errc::kNotSupported);
  CHECK(st.context().find("fake:5") != std::string::npos);

  d.SetSpeculationSupport(/*peek=*/false, /*rearm=*/true);  // rearm needs peek
  CHECK_FALSE(d.SupportsPeekDirty());
  CHECK_FALSE(d.SupportsRearmDirty());
  CHECK(d.PeekDirty(&bm).code() == Errc::kNotSupported);
  CHECK(d.RearmDirty(three).code() == Errc::kNotSupported);
  // The refused calls changed nothing.
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{3});
}

// A Domain that overrides none of the speculation calls gets the defaults.
class MinimalDomain : public Domain {
 public:
  std::string Name() const override { return "minimal:1"; }
  size_t PageSize() const override { return 4096; }
  uint64_t FrameCount() const override { return 4; }
  Status EnableDirtyLog() override { return Status::OK(); }
  Status DisableDirtyLog() override { return Status::OK(); }
  Status FetchAndClearDirty(DirtyBitmap*) override { return Status::OK(); }
  Status Redirty(std::span<const uint64_t>) override { return Status::OK(); }
  Status Suspend() override { return Status::OK(); }
  Status Resume() override { return Status::OK(); }
  Status ReadFrames(std::span<const uint64_t>, uint8_t*, std::span<int>) override {
    return Status::OK();
  }
  Result<std::vector<uint8_t>> SaveState() override { return std::vector<uint8_t>{}; }
  Status RestoreState(std::span<const uint8_t>) override { return Status::OK(); }
};

TEST_CASE("Domain: speculation calls default to kNotSupported", "[fake_domain]") {
  MinimalDomain d;
  CHECK_FALSE(d.SupportsPeekDirty());
  CHECK_FALSE(d.SupportsRearmDirty());
  DirtyBitmap bm;
  Status peek = d.PeekDirty(&bm);
  CHECK(peek.code() == Errc::kNotSupported);
  CHECK(peek.context().find("minimal:1") != std::string::npos);
  CHECK(peek.context().find("PeekDirty") != std::string::npos);
  std::vector<uint64_t> one = {1};
  Status rearm = d.RearmDirty(one);
  CHECK(rearm.code() == Errc::kNotSupported);
  CHECK(rearm.context().find("RearmDirty") != std::string::npos);
}

TEST_CASE("FakeDomain: suspend and resume preconditions", "[fake_domain]") {
  FakeDomain d(8, 128);
  CHECK(d.Resume().code() == Errc::kFailedPrecondition);
  REQUIRE(d.Suspend().ok());
  CHECK(d.suspended());
  CHECK(d.Suspend().code() == Errc::kFailedPrecondition);
  REQUIRE(d.Resume().ok());
  CHECK_FALSE(d.suspended());
  CHECK(d.counters().suspend == 2);
  CHECK(d.counters().resume == 2);
}

TEST_CASE("FakeDomain: guest writes while suspended are refused and counted",
          "[fake_domain]") {
  FakeDomain d(8, 128);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Suspend().ok());
  auto mem = d.memory();
  auto state = d.state();
  CHECK(d.Write(1, 0, Bytes(4, 0)).code() == Errc::kFailedPrecondition);
  d.Fill(2, 0);
  CHECK(d.counters().suspended_writes == 2);
  CHECK(d.counters().pages_written == 0);
  CHECK(d.memory() == mem);
  CHECK(d.state() == state);
  DirtyBitmap bm;
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  REQUIRE(d.Resume().ok());
  CHECK(d.Write(1, 0, Bytes(4, 0)).ok());
  CHECK(d.counters().suspended_writes == 2);
}

TEST_CASE("FakeDomain: SaveState requires suspended, RestoreState round-trips",
          "[fake_domain]") {
  FakeDomain d(8, 128);
  CHECK(d.SaveState().status().code() == Errc::kFailedPrecondition);
  REQUIRE(d.Write(0, 0, Bytes(2, 7)).ok());
  REQUIRE(d.Suspend().ok());
  auto saved_state = d.state();
  auto blob = d.SaveState();
  REQUIRE(blob.ok());
  REQUIRE(d.Resume().ok());
  for (int i = 0; i < 10; ++i) REQUIRE(d.Write(i % 8, 0, Bytes(2, uint8_t(i))).ok());
  REQUIRE(d.state() != saved_state);

  // A second domain of the same shape accepts it and takes the state over.
  FakeDomain backup(8, 128, "backup", 99);
  REQUIRE(backup.state() != saved_state);
  REQUIRE(backup.RestoreState(*blob).ok());
  CHECK(backup.state() == saved_state);
  CHECK(backup.state_counter() == 1);

  REQUIRE(d.RestoreState(*blob).ok());
  CHECK(d.state() == saved_state);
}

TEST_CASE("FakeDomain: RestoreState rejects garbage and leaves state alone",
          "[fake_domain]") {
  FakeDomain d(8, 128);
  REQUIRE(d.Suspend().ok());
  auto blob = d.SaveState();
  REQUIRE(blob.ok());
  REQUIRE(d.Resume().ok());
  REQUIRE(d.Write(0, 0, Bytes(1, 1)).ok());
  const auto state = d.state();

  std::vector<uint8_t> b = *blob;
  CHECK(d.RestoreState({}).code() == Errc::kInvalidArgument);
  CHECK(d.RestoreState(std::span<const uint8_t>(b.data(), b.size() - 1)).code() ==
        Errc::kInvalidArgument);
  std::vector<uint8_t> longer = b;
  longer.push_back(0);
  CHECK(d.RestoreState(longer).code() == Errc::kInvalidArgument);
  for (size_t pos : {size_t{0}, size_t{9}, size_t{20}, size_t{100}, b.size() - 1}) {
    std::vector<uint8_t> garbled = b;
    garbled[pos] ^= 0x40;
    INFO("flipped byte " << pos);
    CHECK(d.RestoreState(garbled).code() == Errc::kInvalidArgument);
  }
  std::vector<uint8_t> zeros(b.size(), 0);
  CHECK(d.RestoreState(zeros).code() == Errc::kInvalidArgument);

  // A well-formed blob from a domain of another shape.
  FakeDomain other(9, 128);
  REQUIRE(other.Suspend().ok());
  auto other_blob = other.SaveState();
  REQUIRE(other_blob.ok());
  Status s = d.RestoreState(*other_blob);
  CHECK(s.code() == Errc::kInvalidArgument);
  CHECK(s.context().find("9 frames") != std::string::npos);

  CHECK(d.state() == state);
  CHECK(d.counters().restore_state == 10);
}

TEST_CASE("FakeDomain: ReadFrames copies frames with per-frame errors", "[fake_domain]") {
  const size_t kPage = 256;
  FakeDomain d(10, kPage);
  d.SetUnreadable(4, true);
  std::vector<uint64_t> pfns = {0, 9, 10, 4, 3, 1000};
  std::vector<uint8_t> buf(pfns.size() * kPage, 0);
  std::vector<int> errors(pfns.size(), -1);
  REQUIRE(d.ReadFrames(pfns, buf.data(), errors).ok());
  CHECK(errors == std::vector<int>{0, 0, EINVAL, EFAULT, 0, EINVAL});
  for (size_t i : {size_t{0}, size_t{1}, size_t{4}}) {
    INFO("slot " << i);
    CHECK(std::memcmp(buf.data() + i * kPage, d.Frame(pfns[i]).data(), kPage) == 0);
  }
  CHECK(buf[3 * kPage] == FakeDomain::kPoisonByte);
  CHECK(d.counters().frames_read == 3);

  // Readable again once the hook is cleared; works while suspended too.
  d.SetUnreadable(4, false);
  REQUIRE(d.Suspend().ok());
  std::vector<uint64_t> one = {4};
  std::vector<int> err1(1, -1);
  REQUIRE(d.ReadFrames(one, buf.data(), err1).ok());
  CHECK(err1[0] == 0);
  CHECK(std::memcmp(buf.data(), d.Frame(4).data(), kPage) == 0);

  // Call-level argument errors.
  std::vector<int> short_errors(1);
  CHECK(d.ReadFrames(pfns, buf.data(), short_errors).code() == Errc::kInvalidArgument);
  CHECK(d.ReadFrames(one, nullptr, err1).code() == Errc::kInvalidArgument);
  CHECK(d.ReadFrames({}, nullptr, {}).ok());
  CHECK(d.counters().read_frames == 5);
}

TEST_CASE("FakeHypervisor: opens registered domains by name", "[fake_domain]") {
  auto d = std::make_shared<FakeDomain>(16, 4096, "fake:3");
  std::unique_ptr<Domain> opened;
  {
    FakeHypervisor hv;
    hv.Add("vm1", d);
    CHECK(hv.Name() == "fake");
    CHECK(hv.Get("vm1") == d);
    CHECK(hv.Get("vm2") == nullptr);

    auto missing = hv.OpenDomain("vm2");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.status().code() == Errc::kNotFound);
    CHECK(missing.status().context() == "no domain named 'vm2' on fake hypervisor");

    auto r = hv.OpenDomain("vm1");
    REQUIRE(r.ok());
    opened = std::move(*r);
  }
  // The handle outlives the hypervisor and drives the same domain.
  CHECK(opened->Name() == "fake:3");
  CHECK(opened->FrameCount() == 16);
  REQUIRE(opened->EnableDirtyLog().ok());
  REQUIRE(d->Write(11, 0, Bytes(1, 1)).ok());
  DirtyBitmap bm;
  REQUIRE(opened->FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{11});
  // Speculation calls are forwarded too.
  CHECK(opened->SupportsPeekDirty());
  CHECK(opened->SupportsRearmDirty());
  REQUIRE(d->Write(12, 0, Bytes(1, 1)).ok());
  REQUIRE(d->Write(13, 0, Bytes(1, 1)).ok());
  REQUIRE(opened->PeekDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{12, 13});
  std::vector<uint64_t> twelve = {12};
  REQUIRE(opened->RearmDirty(twelve).ok());
  REQUIRE(opened->FetchAndClearDirty(&bm).ok());
  CHECK(SetBits(bm) == std::vector<uint64_t>{13});
  d->SetSpeculationSupport(true, false);
  CHECK_FALSE(opened->SupportsRearmDirty());
  REQUIRE(opened->Suspend().ok());
  CHECK(d->suspended());
}

}  // namespace
}  // namespace ftsync::testing

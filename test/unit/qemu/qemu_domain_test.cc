// QemuDomain on a real QEMU under TCG: stop/cont, repeated state saves,
// frame reads, Redirty, attaching by target, and the dirty log's one
// promise -- no page the guest writes is ever missed.
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ftsync/qemu.h"
#include "qemu/qemu_test_env.h"

namespace ftsync {
namespace {

using test::QemuGuest;

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string StatusOf(QemuDomain* d) {
  auto s = d->QueryStatus();
  return s.ok() ? *s : s.status().ToString();
}

TEST_CASE("qemu domain: stop/cont, repeated state saves, frame reads", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  CHECK(d.PageSize() == 4096);
  CHECK(d.FrameCount() == g.launch.ram_bytes / 4096);
  CHECK_THAT(d.Name(), Catch::Contains("qemu:pid " + std::to_string(g.process->pid())));
  CHECK(StatusOf(&d) == "running");

  // The state can only be saved while the guest is stopped.
  CHECK(d.SaveState().status().code() == Errc::kFailedPrecondition);
  // A running QEMU cannot load a state.
  std::vector<uint8_t> junk(16, 1);
  CHECK(d.RestoreState(junk).code() == Errc::kFailedPrecondition);

  size_t first_size = 0;
  for (int i = 0; i < 5; ++i) {
    REQUIRE(d.Suspend().ok());
    CHECK(StatusOf(&d) == "paused");
    auto st = d.SaveState();
    REQUIRE(st.ok());
    CHECK(st->size() > 1000);
    if (i == 0) first_size = st->size();
    // Same devices every time: about the same size (a few sections vary).
    CHECK(st->size() > first_size * 9 / 10);
    CHECK(st->size() < first_size * 11 / 10);
    CHECK(StatusOf(&d) == "postmigrate");
    REQUIRE(d.Resume().ok());
    CHECK(StatusOf(&d) == "running");
    SleepMs(20);
  }

  // Frames beyond the end get a per-frame error; the others are read.
  std::vector<uint64_t> pfns = {0, d.FrameCount() - 1, d.FrameCount(), 1ull << 40};
  std::vector<uint8_t> buf(pfns.size() * 4096);
  std::vector<int> errors(pfns.size(), -1);
  REQUIRE(d.ReadFrames(pfns, buf.data(), errors).ok());
  CHECK(errors == std::vector<int>{0, 0, EINVAL, EINVAL});
  std::vector<int> short_errors(1);
  CHECK(d.ReadFrames(pfns, buf.data(), short_errors).code() == Errc::kInvalidArgument);
  CHECK(d.ReadFrames(pfns, nullptr, errors).code() == Errc::kInvalidArgument);
}

TEST_CASE("qemu domain: Redirty puts frames back into the next fetch", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  DirtyBitmap bm;
  CHECK(d.FetchAndClearDirty(&bm).code() == Errc::kFailedPrecondition);  // log off
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.EnableDirtyLog().ok());  // idempotent
  REQUIRE(d.Suspend().ok());
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  REQUIRE(bm.size() == d.FrameCount());
  const uint64_t last = d.FrameCount() - 1;
  std::vector<uint64_t> back = {7, last};
  REQUIRE(d.Redirty(back).ok());
  std::vector<uint64_t> bad = {3, d.FrameCount()};
  CHECK(d.Redirty(bad).code() == Errc::kInvalidArgument);
  REQUIRE(d.FetchAndClearDirty(&bm).ok());  // guest stopped: only what was put back
  CHECK(bm.Test(7));
  CHECK(bm.Test(last));
  CHECK_FALSE(bm.Test(3));  // the rejected call recorded nothing
  CHECK(bm.Count() == 2);
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  REQUIRE(d.Resume().ok());
  REQUIRE(d.DisableDirtyLog().ok());
  CHECK(d.FetchAndClearDirty(&bm).code() == Errc::kFailedPrecondition);
}

TEST_CASE("qemu domain: attach to a QEMU by pid, socket and RAM address", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  // QEMU serves one client per QMP socket: give it a second one.
  const std::string second = g.dir.Sub("qmp2.sock");
  g.launch.extra_args.insert(g.launch.extra_args.end(),
                             {"-qmp", "unix:" + second + ",server=on,wait=off"});
  REQUIRE_STARTED(g);
  QemuTarget t;
  t.pid = g.process->pid();
  t.qmp_socket = second;
  t.ram_path = g.launch.ram_path;
  t.ram_bytes = g.launch.ram_bytes;
  t.ram_addr = g.process->ram_addr();
  auto d = QemuDomain::Attach(t);
  REQUIRE(d.ok());
  REQUIRE((*d)->Suspend().ok());
  CHECK(StatusOf(g.domain.get()) == "paused");  // seen through the other connection
  REQUIRE((*d)->EnableDirtyLog().ok());
  REQUIRE((*d)->Resume().ok());
  t.ram_bytes = 4095;
  CHECK(QemuDomain::Attach(t).status().code() == Errc::kInvalidArgument);
}

TEST_CASE("qemu domain: the dirty log misses no page the guest writes", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/true);
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  REQUIRE(d.EnableDirtyLog().ok());
  DirtyBitmap dirty;
  // Guest paused: clear the log, copy everything.
  REQUIRE(d.Suspend().ok());
  REQUIRE(d.FetchAndClearDirty(&dirty).ok());
  std::vector<uint8_t> before = test::AllFrames(&d);
  REQUIRE(!before.empty());
  uint64_t changed_total = 0, reported_total = 0, missed = 0;
  const uint64_t frames = d.FrameCount();
  // Rounds while the kernel boots: run, pause, harvest, compare.
  for (int round = 0; round < 20; ++round) {
    REQUIRE(d.Resume().ok());
    SleepMs(round < 10 ? 100 : 300);
    REQUIRE(d.Suspend().ok());
    REQUIRE(d.FetchAndClearDirty(&dirty).ok());
    std::vector<uint8_t> after = test::AllFrames(&d);
    REQUIRE(after.size() == before.size());
    for (uint64_t p = 0; p < frames; ++p) {
      if (std::memcmp(before.data() + p * 4096, after.data() + p * 4096, 4096) == 0) continue;
      ++changed_total;
      if (!dirty.Test(p)) {
        ++missed;
        UNSCOPED_INFO("round " << round << ": frame " << p << " changed but was not reported");
      }
    }
    reported_total += dirty.Count();
    before.swap(after);
  }
  REQUIRE(d.Resume().ok());
  CHECK(missed == 0);
  CHECK(changed_total > 1000);  // the booting guest did write memory
  CHECK(reported_total >= changed_total);
}

TEST_CASE("qemu domain: PeekDirty and RearmDirty on a paused guest", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  CHECK(d.SupportsPeekDirty());
  CHECK(d.SupportsRearmDirty());
  DirtyBitmap bm;
  std::vector<uint64_t> some = {1, 2};
  CHECK(d.PeekDirty(&bm).code() == Errc::kFailedPrecondition);  // log off
  CHECK(d.RearmDirty(some).code() == Errc::kFailedPrecondition);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(d.Suspend().ok());
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  // Guest stopped: the log holds only what is put back.
  const uint64_t last = d.FrameCount() - 1;
  std::vector<uint64_t> back = {5, 6, 9, last};
  REQUIRE(d.Redirty(back).ok());
  REQUIRE(d.PeekDirty(&bm).ok());
  REQUIRE(bm.size() == d.FrameCount());
  CHECK(bm.Count() == 4);
  REQUIRE(d.PeekDirty(&bm).ok());  // nothing cleared
  CHECK(bm.Count() == 4);
  // Re-arming drops frames from the pending Redirty (unsorted, duplicate).
  std::vector<uint64_t> rearm = {9, 5, 9};
  REQUIRE(d.RearmDirty(rearm).ok());
  std::vector<uint64_t> bad = {6, d.FrameCount()};
  CHECK(d.RearmDirty(bad).code() == Errc::kInvalidArgument);  // changes nothing
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.Count() == 2);
  CHECK(bm.Test(6));
  CHECK(bm.Test(last));
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 2);
  CHECK(bm.Test(6));
  CHECK(bm.Test(last));
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.Count() == 0);
  REQUIRE(d.Resume().ok());
}

// The speculative send as an engine does it, on a booting guest: every
// tick, peek, re-arm what was seen, then read it into the copy. At the
// epoch's end, a frame whose early copy differs from the frame must be in
// the final fetch.
TEST_CASE("qemu domain: speculative copies (peek, re-arm, read) miss no write",
          "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/true);
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  REQUIRE(d.EnableDirtyLog().ok());
  DirtyBitmap dirty;
  REQUIRE(d.Suspend().ok());
  REQUIRE(d.FetchAndClearDirty(&dirty).ok());
  std::vector<uint8_t> copy = test::AllFrames(&d);
  REQUIRE(!copy.empty());
  const uint64_t frames = d.FrameCount();
  uint64_t early = 0, final_total = 0, stale = 0;
  std::vector<uint64_t> pfns;
  for (int epoch = 0; epoch < 12; ++epoch) {
    REQUIRE(d.Resume().ok());
    for (int tick = 0; tick < 5; ++tick) {
      SleepMs(20);
      REQUIRE(d.PeekDirty(&dirty).ok());
      pfns.clear();
      dirty.AppendSetBits(&pfns);
      REQUIRE(d.RearmDirty(pfns).ok());
      std::vector<int> errors(pfns.size());
      std::vector<uint8_t> buf(pfns.size() * 4096);
      REQUIRE(d.ReadFrames(pfns, buf.data(), errors).ok());
      for (size_t i = 0; i < pfns.size(); ++i) {
        std::memcpy(copy.data() + pfns[i] * 4096, buf.data() + i * 4096, 4096);
      }
      early += pfns.size();
    }
    REQUIRE(d.Suspend().ok());
    REQUIRE(d.FetchAndClearDirty(&dirty).ok());
    std::vector<uint8_t> now = test::AllFrames(&d);
    REQUIRE(now.size() == copy.size());
    for (uint64_t p = 0; p < frames; ++p) {
      if (std::memcmp(copy.data() + p * 4096, now.data() + p * 4096, 4096) == 0) continue;
      if (!dirty.Test(p)) {
        ++stale;
        UNSCOPED_INFO("epoch " << epoch << ": frame " << p
                               << " changed after its early copy but was not reported");
      }
    }
    final_total += dirty.Count();
    copy.swap(now);
  }
  REQUIRE(d.Resume().ok());
  INFO(early << " frames copied early, " << final_total << " left at epoch ends");
  CHECK(stale == 0);
  CHECK(early > 100);  // the booting guest did write memory while running
}

TEST_CASE("qemu domain: without dirty tracking, no speculation", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  g.launch.dirty_tracking = false;
  REQUIRE_STARTED(g);
  QemuDomain& d = *g.domain;
  CHECK_FALSE(d.SupportsPeekDirty());
  CHECK_FALSE(d.SupportsRearmDirty());
  DirtyBitmap bm;
  CHECK(d.PeekDirty(&bm).code() == Errc::kNotSupported);
  std::vector<uint64_t> one = {1};
  CHECK(d.RearmDirty(one).code() == Errc::kNotSupported);
}

}  // namespace
}  // namespace ftsync

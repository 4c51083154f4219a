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
  REQUIRE(g.Start().ok());
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
  REQUIRE(g.Start().ok());
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
  REQUIRE(g.Start().ok());
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
  REQUIRE(g.Start().ok());
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

}  // namespace
}  // namespace ftsync

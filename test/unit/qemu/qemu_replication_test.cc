// The QEMU backend under the real engines: a Checkpointer on a QemuDomain
// replicates a booting guest through a MemoryPipe to a Receiver; at an
// ACKed epoch, with the guest held paused at that epoch's boundary, the
// replica's memory.img equals QEMU's RAM file byte for byte and its state
// is the state saved in that pause; then the primary dies and a second QEMU
// restored from the replica runs on from the checkpoint.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ftsync/checkpointer.h"
#include "ftsync/qemu.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "qemu/qemu_test_env.h"

namespace ftsync {
namespace {

using test::Env;
using test::QemuGuest;

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Forwards to a Domain and keeps the last saved state. While `hold` is set,
// Resume leaves the guest paused (and sets `held`): the test can look at
// the guest exactly as the epoch captured it.
class HoldingDomain : public Domain {
 public:
  explicit HoldingDomain(Domain* inner) : inner_(inner) {}
  std::string Name() const override { return inner_->Name(); }
  size_t PageSize() const override { return inner_->PageSize(); }
  uint64_t FrameCount() const override { return inner_->FrameCount(); }
  Status EnableDirtyLog() override { return inner_->EnableDirtyLog(); }
  Status DisableDirtyLog() override { return inner_->DisableDirtyLog(); }
  Status FetchAndClearDirty(DirtyBitmap* out) override { return inner_->FetchAndClearDirty(out); }
  Status Redirty(std::span<const uint64_t> pfns) override { return inner_->Redirty(pfns); }
  Status Suspend() override { return inner_->Suspend(); }
  Status Resume() override {
    if (hold) {
      held = true;
      return Status::OK();
    }
    return inner_->Resume();
  }
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) override {
    return inner_->ReadFrames(pfns, dst, errors);
  }
  Result<std::vector<uint8_t>> SaveState() override {
    auto st = inner_->SaveState();
    if (st.ok()) last_state = *st;
    return st;
  }
  Status RestoreState(std::span<const uint8_t> state) override {
    return inner_->RestoreState(state);
  }

  bool hold = false;
  bool held = false;
  std::vector<uint8_t> last_state;

 private:
  Domain* inner_;
};

// A read-only mapping of a whole file.
class FileMap {
 public:
  explicit FileMap(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* m = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) data_ = static_cast<const uint8_t*>(m);
    }
    if (fd >= 0) close(fd);
  }
  ~FileMap() {
    if (data_) munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return data_ ? size_ : 0; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string StatusOf(QemuDomain* d) {
  auto s = d->QueryStatus();
  return s.ok() ? *s : s.status().ToString();
}

TEST_CASE("qemu replication: replica equals RAM at an ACKed epoch; a restore runs on",
          "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  const bool counterd = Env().counterd;
  QemuGuest g(/*boot=*/true);
  REQUIRE_STARTED(g);
  HoldingDomain dom(g.domain.get());

  MemoryPipe fwd, back;
  auto rep = ReplicaImage::Open(g.dir.Sub("replica"));
  REQUIRE(rep.ok());
  Receiver rx(rep->get(), &fwd.source(), &back.sink());
  Status rx_status;
  std::thread rx_thread([&] {
    rx_status = rx.Handshake();
    if (rx_status.ok()) rx_status = rx.Run();
    (void)back.sink().Close();
  });
  struct Joiner {
    std::thread* t;
    MemoryPipe* p;
    ~Joiner() {
      p->CloseReader();
      if (t->joinable()) t->join();
    }
  } joiner{&rx_thread, &fwd};

  CheckpointerOptions o;
  o.max_in_flight = 1;
  Checkpointer cp(&dom, &fwd.sink(), &back.source(), o);
  REQUIRE(cp.Start().ok());  // epoch 0 while the guest boots
  auto epoch = [&] {
    SleepMs(100);
    Status s = cp.Checkpoint();
    INFO(s.ToString());
    REQUIRE(s.ok());
  };
  if (counterd) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (test::ReadWholeFile(g.serial_path).find("ftsync-guest: ready") == std::string::npos) {
      REQUIRE(std::chrono::steady_clock::now() < until);
      epoch();
    }
    for (int i = 1; i <= 3; ++i) {
      CHECK(test::CounterdRequest(g.port, "INCR a") == "a " + std::to_string(i));
      epoch();
    }
  } else {
    for (int i = 0; i < 30; ++i) epoch();
  }

  // The last epoch: the guest stays paused at its boundary.
  dom.hold = true;
  REQUIRE(cp.Checkpoint().ok());
  const uint64_t last = cp.next_epoch() - 1;
  REQUIRE(cp.WaitForAck(last).ok());
  REQUIRE(dom.held);
  CHECK(StatusOf(g.domain.get()) == "postmigrate");  // paused since the state save
  REQUIRE(cp.Finish().ok());
  rx_thread.join();
  REQUIRE(rx_status.ok());
  uint64_t dirty_pages = 0;
  for (const EpochStats& es : cp.stats_history()) dirty_pages += es.epoch > 0 ? es.dirty_pages : 0;
  CHECK(dirty_pages > 0);

  auto reopened = ReplicaImage::Open(g.dir.Sub("replica"));
  REQUIRE(reopened.ok());
  auto info = (*reopened)->LastComplete();
  REQUIRE(info.has_value());
  CHECK(info->epoch == last);
  CHECK(info->frame_count == g.domain->FrameCount());
  {
    FileMap ram(g.launch.ram_path), replica((*reopened)->memory_path());
    REQUIRE(ram.size() == g.launch.ram_bytes);
    REQUIRE(replica.size() == ram.size());
    uint64_t differ = 0, first = 0;
    for (uint64_t off = 0; off < ram.size(); off += 4096) {
      if (std::memcmp(ram.data() + off, replica.data() + off, 4096) != 0) {
        if (differ++ == 0) first = off / 4096;
      }
    }
    INFO("first differing frame " << first);
    CHECK(differ == 0);
  }
  auto state = (*reopened)->ReadState();
  REQUIRE(state.ok());
  CHECK(*state == dom.last_state);
  const std::string memory_img = (*reopened)->memory_path();
  reopened->reset();
  rep->reset();

  // Failover: the primary's QEMU dies; the backup restores the replica.
  const pid_t primary = g.process->pid();
  g.domain.reset();
  REQUIRE(g.process->Kill(SIGKILL).ok());
  REQUIRE(g.process->WaitForExit(10000).ok());
  int port = 0;
  QemuLaunch rl = g.RestoreLaunch(&port);
  auto r = QemuDomain::Restore(rl, memory_img, *state);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  QemuDomain& restored = *r->domain;
  CHECK(r->process->pid() != primary);
  CHECK(StatusOf(&restored) == "running");
  if (counterd) {
    // counterd's state lives only in guest memory: the restored guest
    // continues from the checkpoint, after the third INCR.
    CHECK(test::CounterdRequest(port, "INCR a") == "a 4");
  }
  // It keeps running and writing memory (tracked on the replica's file).
  REQUIRE(restored.EnableDirtyLog().ok());
  SleepMs(1000);
  REQUIRE(restored.Suspend().ok());
  DirtyBitmap bm;
  REQUIRE(restored.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() > 0);
  REQUIRE(restored.Resume().ok());
  CHECK(StatusOf(&restored) == "running");
  CHECK_FALSE(r->process->Exited());
}

TEST_CASE("qemu replication: a state that does not load is a clear error", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  std::vector<uint8_t> junk(4096, 0x5a);
  auto r = QemuDomain::Restore(g.launch, g.launch.ram_path, junk);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::kIoError);
  CHECK_THAT(r.status().context(), Catch::Contains("load state"));
  UNSCOPED_INFO(r.status().ToString());
}

}  // namespace
}  // namespace ftsync
